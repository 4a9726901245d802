/*  evr_config.h - evrelayd settings: defaults, config file, flags.

    The config file is INI (read with libinih); see deploy/evrelayd.conf
    for every key. Command-line flags override the file. Static
    subscriptions ([subscriptions] EVENT = SOCKET) never expire, like
    OpenSIPS' subscribe_event() in startup_route.
*/
#ifndef EVR_CONFIG_H_INCLUDED
#define EVR_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *event;
    char *socket;
} evr_static_sub_t;

typedef struct {
    char *ingest;
    char *control;
    int workers;
    bool syslog;
    bool verbose;
    size_t max_frame_bytes;
    size_t max_control_bytes;
    size_t max_event_bytes;
    size_t max_params;
    uint32_t dedup_window;
    size_t max_producers;
    size_t max_events;
    size_t target_queue;
    int sweep_ms;
    bool datagram_legacy;
    int failover_timeout_s;
    bool tcp_reliable;
    int tcp_timeout_ms;
    char *tcp_event_param; //  NULL = none
    int connect_timeout_ms;
    int http_timeout_ms;
    int amqp_heartbeat_s;
    char *flat_delimiter;
    bool flat_suppress_name;
    int flat_mode;
    char *http;       //  HTTP face ADDR:PORT (MI, metrics, health); NULL = off
    char **catalogue; //  NULL-terminated event names
    evr_static_sub_t *subs;
    size_t nsubs;
} evr_config_t;

//  A configuration holding every default.
evr_config_t *evr_config_new(void);

//  Free and NULL the pointer.
void evr_config_destroy(evr_config_t **self_p);

//  Read an INI file over the current values. Returns 0, or -1 with a reason
//  (file, line, key) in err.
int evr_config_load(evr_config_t *self, const char *path, char *err,
                    size_t errlen);

//  Apply command-line flags (--config is loaded first, then the others
//  override it). Returns 0, 1 when the program should exit 0 (--help,
//  --version, printed to stdout), or -1 with a reason in err.
int evr_config_args(evr_config_t *self, int argc, char **argv, char *err,
                    size_t errlen);

#endif

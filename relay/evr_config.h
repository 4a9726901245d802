/*  evr_config.h - evrelayd settings: defaults, config file, flags.

    The config file is INI (read with libinih); see deploy/evrelayd.conf
    for every key. Command-line flags override the file. Static
    subscriptions ([subscriptions] EVENT = SOCKET) never expire, like
    OpenSIPS' subscribe_event() in startup_route.
*/
#ifndef EVR_CONFIG_H_INCLUDED
#define EVR_CONFIG_H_INCLUDED

#include "evr_policy.h"
#include "evr_store.h"
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
    size_t max_name_length;    //  event names, at most EVR_MAX_EVENT_NAME
    size_t max_batch_events;   //  events in one publish
    size_t max_inflight_bytes; //  DELIVERED bytes pending per producer
    size_t max_subscriptions;  //  local subscribes beyond it are refused
    size_t max_subs_per_event; //  the same, per event
    size_t max_children;       //  of a virtual socket, at most 32
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
    char *http_ca_file;     //  https targets: CA bundle; NULL = the system's
    char *http_client_cert; //  https targets: client certificate (PEM)
    char *http_client_key;  //  and its key
    int amqp_heartbeat_s;
    char *flat_delimiter;
    bool flat_suppress_name;
    int flat_mode;
    char *http;       //  HTTP face ADDR:PORT (MI, metrics, health); NULL = off
    char **catalogue; //  NULL-terminated event names
    //  cluster (docs/CLUSTER.md): off unless cluster or data_dir is set
    char *node_id;       //  NULL = hostname[:cluster port]
    char *cluster;       //  ROUTER endpoint for peers; NULL = not clustered
    char **peers;        //  NULL-terminated cluster endpoints of peers
    char *data_dir;      //  snapshot + log directory; NULL = no persistence
    evr_fsync_t fsync;   //  when the log is fsynced
    int heartbeat_ms;    //  heartbeat period
    int max_skew_ms;     //  remote clocks further ahead are refused
    int max_lease_s;     //  the largest expire a control subscribe may ask
    int antientropy_s;   //  periodic digest comparison
    int join_timeout_ms; //  alone after this long: ready anyway
    evr_static_sub_t *subs;
    size_t nsubs;
    //  security (docs/SECURITY.md)
    bool insecure;   //  allow plain sockets bound beyond loopback
    char *cert;      //  this relay's secret certificate; NULL = no CURVE
    char *producers; //  directory of producer public certificates (ingest)
    char *operators; //  directory of operator public certificates (control)
    char *peer_keys; //  directory of peer relay public certificates
    char *backends;  //  directory of zmq subscribers' public certificates
    char *http_cert; //  PEM certificate for HTTPS on the HTTP face; NULL = off
    char *http_key;  //  its PEM key
    //  [policy], [allow], [http_auth]: who may do what, where
    //  subscriptions may point, HTTP credentials (never NULL)
    evr_policy_rules_t *policy;
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

/*  evr_config.c - evrelayd settings: defaults, config file, flags. */
#include "evr_config.h"
#include "evr_defaults.h"
#include "evr_sockspec.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  Events every relay lists from the start: the OpenSIPS core and common
//  module events (docs/OPERATIONS.md, "Event names"). [events] catalogue replaces the list.
static const char *s_catalogue[] = {"E_CORE_SR_STATUS_CHANGED",
                                    "E_CORE_THRESHOLD",
                                    "E_CORE_SHM_THRESHOLD",
                                    "E_CORE_PKG_THRESHOLD",
                                    "E_CORE_PROC_AUTO_SCALE",
                                    "E_CORE_TCP_DISCONNECT",
                                    "E_CORE_LOG",
                                    "E_PIKE_BLOCKED",
                                    "E_DLG_STATE_CHANGED",
                                    "E_UL_AOR_INSERT",
                                    "E_UL_AOR_DELETE",
                                    "E_UL_CONTACT_INSERT",
                                    "E_UL_CONTACT_DELETE",
                                    "E_UL_CONTACT_UPDATE",
                                    "E_UL_CONTACT_REFRESH",
                                    "E_ACC_CDR",
                                    "E_ACC_EVENT",
                                    "E_ACC_MISSED_EVENT",
                                    "E_DISPATCHER_STATUS",
                                    "E_LOAD_BALANCER_STATUS",
                                    "E_DROUTING_STATUS",
                                    "E_RTPPROXY_STATUS",
                                    "E_CLUSTERER_NODE_STATE_CHANGED",
                                    "E_FLATSTORE_ROTATION",
                                    NULL};

//  Replace a string setting.
static int s_set_str(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

//  Parse a non-negative integer in [min, max]. Returns 0 or -1.
static int s_parse_num(const char *value, long long min, long long max,
                       long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 0);
    if (errno || end == value || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

//  Parse yes/no, true/false, on/off, 1/0. Returns 0 or -1.
static int s_parse_bool(const char *value, bool *out)
{
    if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") ||
        !strcasecmp(value, "on") || !strcmp(value, "1"))
        *out = true;
    else if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
             !strcasecmp(value, "off") || !strcmp(value, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

//  Free a NULL-terminated string list.
static void s_free_list(char **list)
{
    for (char **p = list; p && *p; p++)
        free(*p);
    free(list);
}

//  Split a list of names separated by spaces or commas.
static char **s_split(const char *text)
{
    size_t cap = 8, n = 0;
    char **list = calloc(cap, sizeof *list);
    char *copy = strdup(text);
    if (!list || !copy) {
        free(list);
        free(copy);
        return NULL;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t,", &save); tok;
         tok = strtok_r(NULL, " \t,", &save)) {
        if (n + 1 >= cap) {
            char **grown = realloc(list, cap * 2 * sizeof *list);
            if (!grown)
                break;
            list = grown;
            cap *= 2;
        }
        list[n++] = strdup(tok);
        list[n] = NULL;
    }
    free(copy);
    return list;
}

//  A configuration holding every default.
evr_config_t *evr_config_new(void)
{
    evr_config_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ingest = strdup(EVR_DEFAULT_INGEST);
    self->control = strdup(EVR_DEFAULT_CONTROL);
    self->workers = EVR_DEFAULT_WORKERS;
    self->max_frame_bytes = EVR_DEFAULT_MAX_FRAME_BYTES;
    self->max_control_bytes = EVR_DEFAULT_MAX_CONTROL_BYTES;
    self->max_event_bytes = EVR_DEFAULT_MAX_EVENT_BYTES;
    self->max_params = EVR_DEFAULT_MAX_PARAMS;
    self->max_name_length = EVR_DEFAULT_MAX_NAME_LENGTH;
    self->max_batch_events = EVR_DEFAULT_MAX_BATCH_EVENTS;
    self->max_inflight_bytes = EVR_DEFAULT_MAX_INFLIGHT_BYTES;
    self->max_subscriptions = EVR_DEFAULT_MAX_SUBSCRIPTIONS;
    self->max_subs_per_event = EVR_DEFAULT_MAX_SUBSCRIPTIONS_PER_EVENT;
    self->max_children = EVR_DEFAULT_MAX_CHILDREN;
    self->dedup_window = EVR_DEFAULT_DEDUP_WINDOW;
    self->max_producers = EVR_DEFAULT_MAX_PRODUCERS;
    self->max_events = EVR_DEFAULT_MAX_EVENTS;
    self->target_queue = EVR_DEFAULT_TARGET_QUEUE;
    self->sweep_ms = EVR_DEFAULT_SWEEP_MS;
    self->flat_delimiter = strdup(EVR_DEFAULT_FLAT_DELIMITER);
    self->flat_mode = EVR_DEFAULT_FLAT_MODE;
    self->failover_timeout_s = EVR_DEFAULT_FAILOVER_TIMEOUT_S;
    self->tcp_timeout_ms = EVR_DEFAULT_TCP_TIMEOUT_MS;
    self->connect_timeout_ms = EVR_DEFAULT_CONNECT_TIMEOUT_MS;
    self->http_timeout_ms = EVR_DEFAULT_HTTP_TIMEOUT_MS;
    self->amqp_heartbeat_s = EVR_DEFAULT_AMQP_HEARTBEAT_S;
    self->fsync = EVR_FSYNC_BATCH;
    self->heartbeat_ms = EVR_DEFAULT_HEARTBEAT_MS;
    self->max_skew_ms = EVR_DEFAULT_MAX_SKEW_MS;
    self->max_lease_s = EVR_DEFAULT_MAX_LEASE_S;
    self->antientropy_s = EVR_DEFAULT_ANTIENTROPY_S;
    self->join_timeout_ms = EVR_DEFAULT_JOIN_TIMEOUT_MS;
    self->policy = evr_policy_new();
    size_t n = 0;
    while (s_catalogue[n])
        n++;
    self->catalogue = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; self->catalogue && i < n; i++)
        self->catalogue[i] = strdup(s_catalogue[i]);
    if (!self->ingest || !self->control || !self->flat_delimiter ||
        !self->catalogue || !self->policy)
        evr_config_destroy(&self);
    return self;
}

//  Free and NULL the pointer.
void evr_config_destroy(evr_config_t **self_p)
{
    evr_config_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    free(self->ingest);
    free(self->control);
    free(self->flat_delimiter);
    free(self->tcp_event_param);
    free(self->http);
    free(self->node_id);
    free(self->cluster);
    free(self->data_dir);
    free(self->cert);
    free(self->producers);
    free(self->operators);
    free(self->peer_keys);
    free(self->backends);
    free(self->http_cert);
    free(self->http_key);
    free(self->http_ca_file);
    free(self->http_client_cert);
    free(self->http_client_key);
    s_free_list(self->peers);
    s_free_list(self->catalogue);
    evr_policy_destroy(&self->policy);
    for (size_t i = 0; i < self->nsubs; i++) {
        free(self->subs[i].event);
        free(self->subs[i].socket);
    }
    free(self->subs);
    free(self);
}

//  A numeric key: name, where it lives, its bounds.
typedef struct {
    const char *section;
    const char *key;
    size_t offset;
    int size; //  sizeof the field
    long long min, max;
} s_numkey_t;

#define S_NUM(sec, key, field, min, max)                                       \
    {                                                                          \
        sec, key, offsetof(evr_config_t, field),                               \
            (int)sizeof(((evr_config_t *)0)->field), min, max                  \
    }

//  The virtual transport's child mask bounds the configurable limit.
_Static_assert(EVR_DEFAULT_MAX_CHILDREN <= EVR_MAX_CHILDREN,
               "max_children default above the virtual transport's mask");

static const s_numkey_t s_numkeys[] = {
    S_NUM("relay", "workers", workers, 1, 64),
    S_NUM("relay", "sweep_ms", sweep_ms, 10, 60000),
    S_NUM("limits", "max_frame_bytes", max_frame_bytes, 1024, 1 << 30),
    S_NUM("limits", "max_control_bytes", max_control_bytes, 1024, 1 << 30),
    S_NUM("limits", "max_event_bytes", max_event_bytes, 64, 1 << 30),
    S_NUM("limits", "max_params", max_params, 1, 65536),
    S_NUM("limits", "max_name_length", max_name_length, 1, EVR_MAX_EVENT_NAME),
    S_NUM("limits", "max_batch_events", max_batch_events, 1, 1 << 24),
    S_NUM("limits", "max_inflight_bytes", max_inflight_bytes, 1024, 1LL << 40),
    S_NUM("limits", "max_subscriptions", max_subscriptions, 1, 1 << 26),
    S_NUM("limits", "max_subscriptions_per_event", max_subs_per_event, 1,
          1 << 26),
    S_NUM("limits", "max_children", max_children, 1, EVR_MAX_CHILDREN),
    S_NUM("limits", "dedup_window", dedup_window, 64, 1 << 26),
    S_NUM("limits", "max_producers", max_producers, 1, 1 << 24),
    S_NUM("limits", "max_events", max_events, 16, 1 << 24),
    S_NUM("limits", "target_queue", target_queue, 1, 1 << 26),
    S_NUM("flatstore", "file_permissions", flat_mode, 0, 07777),
    S_NUM("virtual", "failover_timeout", failover_timeout_s, 0, 86400),
    S_NUM("tcp", "timeout", tcp_timeout_ms, 1, 3600000),
    S_NUM("relay", "connect_timeout_ms", connect_timeout_ms, 1, 600000),
    S_NUM("http", "timeout", http_timeout_ms, 1, 3600000),
    S_NUM("rabbitmq", "heartbeat", amqp_heartbeat_s, 0, 3600),
    S_NUM("cluster", "heartbeat_ms", heartbeat_ms, 10, 60000),
    S_NUM("cluster", "max_skew_ms", max_skew_ms, 0, 3600000),
    S_NUM("cluster", "max_lease_s", max_lease_s, 1, 31536000),
    S_NUM("cluster", "antientropy_s", antientropy_s, 1, 86400),
    S_NUM("cluster", "join_timeout_ms", join_timeout_ms, 0, 600000),
};

//  Store a parsed number into its field.
static void s_store_num(evr_config_t *self, const s_numkey_t *k, long long v)
{
    char *field = (char *)self + k->offset;
    if (k->size == sizeof(int))
        *(int *)field = (int)v;
    else if (k->size == sizeof(size_t))
        *(size_t *)field = (size_t)v;
}

typedef struct {
    evr_config_t *self;
    char *err;
    size_t errlen;
    const char *path;
} s_load_t;

//  Record a static subscription.
static int s_add_sub(evr_config_t *self, const char *event, const char *socket)
{
    evr_static_sub_t *grown =
        realloc(self->subs, (self->nsubs + 1) * sizeof *grown);
    if (!grown)
        return -1;
    self->subs = grown;
    self->subs[self->nsubs].event = strdup(event);
    self->subs[self->nsubs].socket = strdup(socket);
    self->nsubs++;
    return 0;
}

//  Append a peer endpoint (a repeated --peer, or one of [cluster] peers).
static int s_add_peer(evr_config_t *self, const char *endpoint)
{
    size_t n = 0;
    while (self->peers && self->peers[n])
        n++;
    char **grown = realloc(self->peers, (n + 2) * sizeof *grown);
    if (!grown)
        return -1;
    self->peers = grown;
    self->peers[n] = strdup(endpoint);
    self->peers[n + 1] = NULL;
    return self->peers[n] ? 0 : -1;
}

//  Set or clear (empty value) an optional string setting.
static int s_set_opt(char **slot, const char *value)
{
    free(*slot);
    *slot = *value ? strdup(value) : NULL;
    return *value && !*slot ? -1 : 0;
}

//  Parse an fsync policy: always, batch or never. Returns 0 or -1.
static int s_parse_fsync(const char *value, evr_fsync_t *out)
{
    if (!strcmp(value, "always"))
        *out = EVR_FSYNC_ALWAYS;
    else if (!strcmp(value, "batch"))
        *out = EVR_FSYNC_BATCH;
    else if (!strcmp(value, "never"))
        *out = EVR_FSYNC_NEVER;
    else
        return -1;
    return 0;
}

//  Whether key is one of the [cluster] keys s_cluster_key handles.
static bool s_cluster_str_key(const char *key)
{
    return !strcmp(key, "node_id") || !strcmp(key, "listen") ||
           !strcmp(key, "data_dir") || !strcmp(key, "fsync") ||
           !strcmp(key, "peers");
}

//  A [cluster] key other than the numeric ones. Returns 0, or -1 on a bad
//  value.
static int s_cluster_key(evr_config_t *self, const char *key, const char *value)
{
    if (!strcmp(key, "node_id"))
        return s_set_opt(&self->node_id, value);
    if (!strcmp(key, "listen"))
        return s_set_opt(&self->cluster, value);
    if (!strcmp(key, "data_dir"))
        return s_set_opt(&self->data_dir, value);
    if (!strcmp(key, "fsync"))
        return s_parse_fsync(value, &self->fsync);
    char **list = s_split(value); //  peers
    if (!list)
        return -1;
    s_free_list(self->peers);
    self->peers = NULL;
    int rc = 0;
    for (char **p = list; *p && rc == 0; p++)
        rc = s_add_peer(self, *p);
    s_free_list(list);
    return rc;
}

//  The string setting a [security] key names, or NULL.
static char **s_security_slot(evr_config_t *self, const char *key)
{
    return !strcmp(key, "cert")        ? &self->cert
           : !strcmp(key, "producers") ? &self->producers
           : !strcmp(key, "operators") ? &self->operators
           : !strcmp(key, "peers")     ? &self->peer_keys
           : !strcmp(key, "backends")  ? &self->backends
           : !strcmp(key, "http_cert") ? &self->http_cert
           : !strcmp(key, "http_key")  ? &self->http_key
                                       : NULL;
}

//  libinih callback: one key. Returns 1 to continue, 0 on error.
static int s_ini_key(void *user, const char *section, const char *key,
                     const char *value)
{
    s_load_t *ld = user;
    evr_config_t *self = ld->self;
    int rc = 0;
    bool known = true;
    if (evr_policy_section(section)) {
        //  the reason names the key, never a [http_auth] secret
        char why[512];
        if (evr_policy_set(self->policy, section, key, value, why,
                           sizeof why) == 0)
            return 1;
        snprintf(ld->err, ld->errlen, "%s.%s: %s", section, key, why);
        return 0;
    }
    if (!strcmp(section, "subscriptions"))
        rc = s_add_sub(self, key, value);
    else if (!strcmp(section, "relay") && !strcmp(key, "ingest"))
        rc = s_set_str(&self->ingest, value);
    else if (!strcmp(section, "relay") && !strcmp(key, "control"))
        rc = s_set_str(&self->control, value);
    else if (!strcmp(section, "relay") && !strcmp(key, "http")) {
        free(self->http);
        self->http = *value ? strdup(value) : NULL;
        rc = *value && !self->http ? -1 : 0;
    } else if (!strcmp(section, "relay") && !strcmp(key, "log"))
        rc = strcmp(value, "syslog") == 0   ? (self->syslog = true, 0)
             : strcmp(value, "stderr") == 0 ? (self->syslog = false, 0)
                                            : -1;
    else if (!strcmp(section, "relay") && !strcmp(key, "verbose"))
        rc = s_parse_bool(value, &self->verbose);
    else if (!strcmp(section, "datagram") && !strcmp(key, "format"))
        rc = strcmp(value, "legacy") == 0 ? (self->datagram_legacy = true, 0)
             : strcmp(value, "json") == 0 ? (self->datagram_legacy = false, 0)
                                          : -1;
    else if (!strcmp(section, "flatstore") && !strcmp(key, "delimiter"))
        rc = *value ? s_set_str(&self->flat_delimiter, value) : -1;
    else if (!strcmp(section, "flatstore") &&
             !strcmp(key, "suppress_event_name"))
        rc = s_parse_bool(value, &self->flat_suppress_name);
    else if (!strcmp(section, "tcp") && !strcmp(key, "reliable_mode"))
        rc = s_parse_bool(value, &self->tcp_reliable);
    else if (!strcmp(section, "tcp") && !strcmp(key, "event_param"))
        rc = *value ? s_set_str(&self->tcp_event_param, value) : 0;
    else if (!strcmp(section, "security") && s_security_slot(self, key))
        rc = s_set_opt(s_security_slot(self, key), value);
    else if (!strcmp(section, "security") && !strcmp(key, "insecure"))
        rc = s_parse_bool(value, &self->insecure);
    else if (!strcmp(section, "http") && !strcmp(key, "ca_file"))
        rc = s_set_opt(&self->http_ca_file, value);
    else if (!strcmp(section, "http") && !strcmp(key, "client_cert"))
        rc = s_set_opt(&self->http_client_cert, value);
    else if (!strcmp(section, "http") && !strcmp(key, "client_key"))
        rc = s_set_opt(&self->http_client_key, value);
    else if (!strcmp(section, "cluster") && s_cluster_str_key(key))
        rc = s_cluster_key(self, key, value);
    else if (!strcmp(section, "events") && !strcmp(key, "catalogue")) {
        char **list = s_split(value);
        if (list) {
            s_free_list(self->catalogue);
            self->catalogue = list;
        } else
            rc = -1;
    } else {
        known = false;
        for (size_t i = 0; i < sizeof s_numkeys / sizeof *s_numkeys; i++) {
            const s_numkey_t *k = &s_numkeys[i];
            long long v;
            if (strcmp(section, k->section) || strcmp(key, k->key))
                continue;
            known = true;
            rc = s_parse_num(value, k->min, k->max, &v);
            if (rc == 0)
                s_store_num(self, k, v);
        }
    }
    if (!known) {
        snprintf(ld->err, ld->errlen, "unknown key '%s' in [%s]", key, section);
        return 0;
    }
    if (rc) {
        snprintf(ld->err, ld->errlen, "bad value '%s' for %s.%s", value,
                 section, key);
        return 0;
    }
    return 1;
}

//  Read an INI file over the current values.
int evr_config_load(evr_config_t *self, const char *path, char *err,
                    size_t errlen)
{
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    s_load_t ld = {self, err, errlen, path};
    err[0] = 0;
    int rc = ini_parse_file(file, s_ini_key, &ld);
    fclose(file);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", err[0] ? err : "syntax error");
    snprintf(err, errlen, "%s:%d: %s", path, rc, why);
    return -1;
}

static const char *s_usage =
    "usage: evrelayd [options]\n"
    "  -c, --config FILE     read settings from an INI file\n"
    "  -i, --ingest EP       ZeroMQ endpoint for producers "
    "(default " EVR_DEFAULT_INGEST ")\n"
    "  -C, --control EP      ZeroMQ endpoint for evrelayctl "
    "(default " EVR_DEFAULT_CONTROL ")\n"
    "  -w, --workers N       delivery worker threads (default 1)\n"
    "      --http ADDR:PORT  serve MI (POST /mi), GET /metrics and GET "
    "/health\n"
    "                        e.g. 127.0.0.1:8888 or [::1]:8888 (default off)\n"
    "      --http-cert FILE  serve HTTPS with this PEM certificate (chain)\n"
    "      --http-key FILE   and this PEM key (unencrypted)\n"
    "  -s, --subscribe EVENT=SOCKET  a permanent subscription (repeatable)\n"
    "                        (local to this relay, never replicated)\n"
    "      --cluster EP      join a relay cluster: where peers reach this\n"
    "                        relay, e.g. tcp://10.0.0.1:7960 (default off)\n"
    "      --peer EP         a peer's --cluster endpoint (repeatable; one\n"
    "                        seed is enough, the others are learned)\n"
    "      --node-id ID      unique name of this relay in the cluster\n"
    "                        (default hostname:cluster-port)\n"
    "      --data-dir DIR    keep the subscriptions on disk (snapshot +\n"
    "                        log), with or without --cluster\n"
    "      --cert FILE       this relay's secret certificate: CURVE on\n"
    "                        every ZeroMQ socket (evrelayctl keygen)\n"
    "      --producers DIR   public certificates allowed on ingest\n"
    "      --operators DIR   public certificates allowed on control\n"
    "      --peer-keys DIR   public certificates of cluster peers\n"
    "      --backend-keys DIR  public certificates of zmq subscribers\n"
    "      --insecure        allow plain sockets bound beyond loopback\n"
    "      --syslog          log to syslog instead of stderr\n"
    "  -v, --verbose         log every subscription change\n"
    "  -h, --help            this text\n"
    "  -V, --version         print the version\n";

//  Apply command-line flags.
int evr_config_args(evr_config_t *self, int argc, char **argv, char *err,
                    size_t errlen)
{
    static const struct option longopts[] = {
        {"config", required_argument, 0, 'c'},
        {"ingest", required_argument, 0, 'i'},
        {"control", required_argument, 0, 'C'},
        {"workers", required_argument, 0, 'w'},
        {"subscribe", required_argument, 0, 's'},
        {"syslog", no_argument, 0, 'L'},
        {"http", required_argument, 0, 'H'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"node-id", required_argument, 0, 'N'},
        {"cluster", required_argument, 0, 'K'},
        {"peer", required_argument, 0, 'P'},
        {"data-dir", required_argument, 0, 'D'},
        {"cert", required_argument, 0, 'k'},
        {"producers", required_argument, 0, 'p'},
        {"operators", required_argument, 0, 'o'},
        {"peer-keys", required_argument, 0, 'q'},
        {"backend-keys", required_argument, 0, 'b'},
        {"insecure", no_argument, 0, 'I'},
        {"http-cert", required_argument, 0, 'T'},
        {"http-key", required_argument, 0, 'Y'},
        {0, 0, 0, 0}};
    const char *shortopts = "c:i:C:w:s:vhV";
    //  Pass 1: the config file, so flags override it.
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1)
        if (c == 'c' && evr_config_load(self, optarg, err, errlen))
            return -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        long long v;
        char *eq;
        switch (c) {
            case 'c':
                break;
            case 'i':
                s_set_str(&self->ingest, optarg);
                break;
            case 'C':
                s_set_str(&self->control, optarg);
                break;
            case 'w':
                if (s_parse_num(optarg, 1, 64, &v)) {
                    snprintf(err, errlen, "--workers: expected 1..64");
                    return -1;
                }
                self->workers = (int)v;
                break;
            case 's':
                eq = strchr(optarg, '=');
                if (!eq || eq == optarg) {
                    snprintf(err, errlen, "--subscribe: expected EVENT=SOCKET");
                    return -1;
                }
                *eq = 0;
                s_add_sub(self, optarg, eq + 1);
                *eq = '=';
                break;
            case 'L':
                self->syslog = true;
                break;
            case 'H':
                if (s_set_str(&self->http, optarg)) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                break;
            case 'v':
                self->verbose = true;
                break;
            case 'N':
            case 'K':
            case 'D':
                if (s_set_opt(c == 'N'   ? &self->node_id
                              : c == 'K' ? &self->cluster
                                         : &self->data_dir,
                              optarg)) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                break;
            case 'k':
            case 'p':
            case 'o':
            case 'q':
            case 'b':
            case 'T':
            case 'Y':
                if (s_set_opt(s_security_slot(self, c == 'k'   ? "cert"
                                                    : c == 'p' ? "producers"
                                                    : c == 'o' ? "operators"
                                                    : c == 'q' ? "peers"
                                                    : c == 'T' ? "http_cert"
                                                    : c == 'Y' ? "http_key"
                                                               : "backends"),
                              optarg)) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                break;
            case 'I':
                self->insecure = true;
                break;
            case 'P':
                if (s_add_peer(self, optarg)) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                break;
            case 'h':
                fputs(s_usage, stdout);
                return 1;
            case 'V':
                printf("evrelayd 0.1.0\n");
                return 1;
            default:
                snprintf(err, errlen,
                         "unknown or incomplete option '%s' (see --help)",
                         argv[optind - 1]);
                return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

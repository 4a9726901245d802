/*  evr_relay.c - the relay core: ingest, control, table, dispatch.

    Ingest path, per Publish frame (ROUTER: envelope frames, then the
    payload as the last frame):
      size check -> protobuf decode (into a per-frame arena) -> version
      check and batch limits (max_batch_events, max_inflight_bytes) ->
      de-duplication window of (producer, epoch) -> per event: validate
      (name length, name, params), look the name up in the table, encode
      each payload format at most once (max_event_bytes), admit into each
      target's bounded queue -> hand the jobs to the workers -> Ack
      (cumulative + this batch's range). A frame over max_frame_bytes or
      one that does not decode is answered with an Ack of no stream.

    Ack points (the Publish's ack_point):
    - ACCEPTED (default): the Ack goes out at once: queued on this relay.
    - NONE: no Ack for an accepted batch (fire-and-forget producers).
    - DELIVERED: a tracker (evr_track.h) follows the batch; every job it
      hands to a worker carries one hold on it, and the batch's seq range
      is marked in progress on its stream. The last hold let go (on a
      worker, when a delivery is final) queues the tracker; the loop polls
      that queue's eventfd, and s_track_finish answers with the Ack (with
      Ack.failed) and clears the range. A DELIVERED batch that repeats an
      event still in progress here is not answered at all (counted in
      held_back): the original's Ack will answer it, or the producer
      resends. A relay that stops answers nothing more.

    Every event gets an id (producer hex, epoch, seq), carried on its
    messages for evid: targets, AMQP message ids and HTTP headers; control
    raises get relay-<boot us>-<n>.
*/
#include "evr_relay.h"
#include "evr_auth.h"
#include "evr_cluster.h"
#include "evr_control.h"
#include "evr_decode.h"
#include "evr_dedup.h"
#include "evr_defaults.h"
#include "evr_http.h"
#include "evr_payload.h"
#include "evr_sockspec.h"
#include "evr_stats.h"
#include "evr_target.h"
#include "evr_track.h"
#include "evr_worker.h"
#include "evrelay.pb-c.h"

#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_ENVELOPE 16

//  A registry entry: one target and how many subscriptions use it.
typedef struct {
    evr_target_t *target;
    size_t subs;
} s_tref_t;

//  A DELIVERED batch in progress on this relay: its seq range and its
//  tracker (identity only; never dereferenced through here).
typedef struct {
    uint64_t first, last;
    const evr_track_t *track;
} s_busy_t;

//  The de-duplication state of one producer instance, and its DELIVERED
//  batches in progress, ordered by first seq.
typedef struct {
    evr_dedup_t *window;
    int64_t last_seen_ms;
    s_busy_t *busy;
    size_t nbusy, capbusy;
    size_t inflight; //  frame bytes of those batches (max_inflight_bytes)
} s_producer_t;

//  Longest producer key: hex producer id, ':' and a decimal epoch.
#define S_KEY_MAX (64 * 2 + 32)

//  Longest event id: hex producer id, '-', epoch, '-', seq.
#define S_ID_MAX (64 * 2 + 48)

//  What the Ack of a DELIVERED batch needs once its deliveries are final
//  (the tracker's data).
typedef struct {
    zmq_msg_t *env; //  the Publish's envelope, moved here
    int nenv;
    bool silent; //  held back: no Ack at all
    uint8_t producer_id[64];
    size_t producer_len;
    uint64_t epoch, first_seq;
    uint32_t count, dups;
    uint32_t *rejected; //  offsets of events refused one by one
    uint32_t nrejected;
    size_t bytes;        //  the Publish frame's size, counted in flight
    char key[S_KEY_MAX]; //  the stream, to find its busy ranges again
} s_pending_t;

//  The fields of one Ack.
typedef struct {
    const uint8_t *producer_id;
    size_t producer_len;
    uint64_t epoch, first_seq, through;
    uint32_t count, dups;
    const uint32_t *rejected; //  offsets
    uint32_t nrejected;
    const uint32_t *failed; //  offsets (DELIVERED)
    uint32_t nfailed;
    const char *error; //  REJECTED when set
} s_ackinfo_t;

struct _evr_relay_t {
    const evr_config_t *cfg;
    void *ctx;
    evr_auth_t *auth; //  CURVE (NULL = plain sockets)
    void *ingest;
    void *control;
    void *http_core;  //  ROUTER for the HTTP face's requests (NULL = off)
    evr_http_t *http; //  the HTTP face (NULL = off)
    evr_worker_t **workers;
    int nworkers;
    int next_worker;
    evr_table_t *table;
    zhashx_t *targets;   //  canonical socket -> s_tref_t
    zhashx_t *producers; //  "hex(id):epoch" -> s_producer_t
    evr_ingest_stats_t in;
    evr_control_stats_t ct;
    evr_policy_stats_t pol; //  refusals of the access policy
    int64_t start_ms;
    //  Per-dispatch scratch: jobs per worker.
    evr_job_t **jobs;
    size_t *njobs, *capjobs;
    evr_buf_t buf;
    evr_arena_t arena; //  each Publish is decoded into it
    evr_target_opts_t topts;
    evr_param_t *params;    //  max_params views for the event being decoded
    evr_cluster_t *cluster; //  replication + persistence (NULL = off)
    //  DELIVERED ack point
    evr_trackq_t *trackq; //  finished trackers, polled by the loop
    uint64_t track_jobs;  //  jobs of the batch being dispatched, to hold
    uint32_t *offsets;    //  scratch: rejected or failed offsets of a batch
    size_t noffsets, capoffsets;
    uint8_t *ackbuf; //  scratch: an encoded Ack
    size_t ackcap;
    uint64_t inflight_bytes; //  frame bytes of pending DELIVERED batches
    //  event ids of control raises: relay-<boot_us>-<n>
    int64_t boot_us;
    uint64_t raises;
};

//  The relay's clock, ms since the epoch.
int64_t evr_relay_now_ms(void)
{
    return zclock_time();
}

//  --- target registry ------------------------------------------------------

//  Table release hook: one subscription fewer for a target.
static void s_release_tref(void *target, void *arg)
{
    evr_relay_t *self = arg;
    s_tref_t *tref = target;
    if (!tref || --tref->subs > 0)
        return;
    //  Retire it and wake its worker, which drops what is still queued for
    //  it and closes its connections (workers are gone at shutdown).
    evr_target_retire(tref->target);
    evr_worker_t *worker = self->workers[evr_target_worker(tref->target)];
    if (worker)
        evr_worker_submit(worker, NULL, 0);
    zhashx_delete(self->targets, evr_target_socket(tref->target));
}

//  zhashx destructor for registry entries.
static void s_tref_destroy(void **item)
{
    s_tref_t *tref = *item;
    *item = NULL;
    if (tref) {
        evr_target_unref(&tref->target);
        free(tref);
    }
}

//  zhashx destructor for producer windows.
static void s_producer_destroy(void **item)
{
    s_producer_t *p = *item;
    *item = NULL;
    if (p) {
        evr_dedup_destroy(&p->window);
        free(p->busy);
        free(p);
    }
}

//  --- cluster --------------------------------------------------------------

//  Cluster apply hook: make the table agree with a replicated record. A
//  static subscription of the same key stays as configured. The access
//  policy is not asked again: the relay that took the write checked it
//  (and records loaded from the data directory were checked when made).
static int s_cluster_apply(void *arg, const evr_record_t *rec, bool live,
                           bool remote, char *err, size_t errlen)
{
    evr_relay_t *self = arg;
    int64_t now = evr_relay_now_ms();
    evr_sub_info_t info;
    if (remote &&
        evr_table_find(self->table, rec->event, rec->match_key, now, &info) ==
            0 &&
        info.expire_s == EVR_EXPIRE_NEVER)
        return 0;
    return evr_relay_subscribe_at(
        self, rec->event, rec->socket, live ? (int64_t)rec->expire_s : 0,
        live ? (int64_t)rec->sub_time_ms : now, err, errlen);
}

//  Start the cluster (--cluster and/or --data-dir): load the table from
//  disk, bind, start joining.
static int s_cluster_start(evr_relay_t *self, char *err, size_t errlen)
{
    if (!self->cfg->cluster && !self->cfg->data_dir)
        return 0;
    self->cluster = evr_cluster_new(self->ctx, self->auth, self->cfg,
                                    s_cluster_apply, self, err, errlen);
    return self->cluster ? 0 : -1;
}

//  The cluster, or NULL when the relay is neither clustered nor
//  persistent.
evr_cluster_t *evr_relay_cluster(evr_relay_t *self)
{
    return self->cluster;
}

//  --- construction ---------------------------------------------------------

//  Create a ROUTER bound to endpoint; a CURVE server of domain d when
//  auth is on (d < 0: an internal socket, never secured).
static void *s_router(void *ctx, evr_auth_t *auth, int d, const char *endpoint,
                      char *err, size_t errlen)
{
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0, hwm = 100000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (d >= 0 &&
        evr_auth_server(auth, sock, (evr_auth_domain_t)d, err, errlen)) {
        zmq_close(sock);
        return NULL;
    }
    if (zmq_bind(sock, endpoint)) {
        snprintf(err, errlen, "cannot bind %s: %s", endpoint,
                 zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

//  Refuse plain ZeroMQ sockets bound beyond loopback unless insecure is
//  set (then warn). Returns 0, or -1 with a reason.
static int s_check_plain(const evr_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->cert)
        return 0;
    const char *eps[] = {cfg->ingest, cfg->control, cfg->cluster};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        if (!eps[i] || evr_auth_endpoint_is_local(eps[i]))
            continue;
        if (!cfg->insecure) {
            snprintf(err, errlen,
                     "%s is beyond loopback and no certificate is set: "
                     "configure [security] cert (CURVE) or pass --insecure",
                     eps[i]);
            return -1;
        }
        zsys_warning("INSECURE: %s is a plain socket beyond loopback: anyone "
                     "who reaches it can publish, subscribe and read events",
                     eps[i]);
    }
    return 0;
}

//  Check the static subscriptions against the destination allowlist: they
//  are the operator's own, but an allowlist says where the relay may send
//  at all. Returns 0, or -1 naming the first one refused.
static int s_check_static(const evr_config_t *cfg, char *err, size_t errlen)
{
    const char *files[][2] = {{"ca_file", cfg->http_ca_file},
                              {"client_cert", cfg->http_client_cert},
                              {"client_key", cfg->http_client_key}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (files[i][1] && access(files[i][1], R_OK)) {
            snprintf(err, errlen, "http.%s: cannot read %s: %s", files[i][0],
                     files[i][1], strerror(errno));
            return -1;
        }
    if (!cfg->http_client_cert != !cfg->http_client_key) {
        snprintf(err, errlen, "http: client_cert and client_key go together");
        return -1;
    }
    for (size_t i = 0; i < cfg->nsubs; i++) {
        char why[512];
        evr_denial_t denial;
        evr_sockspec_t *spec =
            evr_sockspec_parse(cfg->subs[i].socket, why, sizeof why);
        int rc = spec ? evr_policy_check_socket(cfg->policy, spec, &denial) : 0;
        evr_sockspec_destroy(&spec);
        if (rc) {
            snprintf(err, errlen, "static subscription %s = %s: %s",
                     cfg->subs[i].event, cfg->subs[i].socket, denial.message);
            return -1;
        }
    }
    return 0;
}

//  The signals the core acts on: SIGINT and SIGTERM stop, SIGHUP reloads.
static sigset_t s_core_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return set;
}

//  Create the relay.
evr_relay_t *evr_relay_new(const evr_config_t *cfg, char *err, size_t errlen)
{
    if (s_check_static(cfg, err, errlen))
        return NULL;
    //  The signals the core acts on stay blocked in this thread and in
    //  every thread made from here on (workers, the threads they make, the
    //  ZAP handler): evr_relay_run reads them from a signalfd.
    sigset_t set = s_core_signals();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    evr_relay_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->start_ms = evr_relay_now_ms();
    self->topts.datagram_legacy = cfg->datagram_legacy;
    self->topts.file_mode = cfg->flat_mode;
    self->topts.sndbuf = 4 * 1024 * 1024;
    self->topts.queue_limit = cfg->target_queue;
    self->topts.failover_timeout_s = cfg->failover_timeout_s;
    self->topts.tcp_reliable = cfg->tcp_reliable;
    self->topts.tcp_timeout_ms = cfg->tcp_timeout_ms;
    self->topts.tcp_event_param = cfg->tcp_event_param;
    self->topts.connect_timeout_ms = cfg->connect_timeout_ms;
    self->topts.http_timeout_ms = cfg->http_timeout_ms;
    self->topts.http_ca_file = cfg->http_ca_file;
    self->topts.http_client_cert = cfg->http_client_cert;
    self->topts.http_client_key = cfg->http_client_key;
    self->topts.amqp_heartbeat_s = cfg->amqp_heartbeat_s;
    self->topts.flat_delimiter = cfg->flat_delimiter;
    self->topts.flat_suppress_name = cfg->flat_suppress_name;
    self->boot_us = evr_wall_us();
    self->trackq = evr_trackq_new();
    evr_arena_init(&self->arena);
    self->table = evr_table_new(cfg->max_events, s_release_tref, self);
    self->targets = zhashx_new();
    self->producers = zhashx_new();
    self->ctx = zmq_ctx_new();
    self->topts.zmq_ctx = self->ctx;
    self->nworkers = cfg->workers;
    self->workers = calloc((size_t)cfg->workers, sizeof *self->workers);
    self->jobs = calloc((size_t)cfg->workers, sizeof *self->jobs);
    self->njobs = calloc((size_t)cfg->workers, sizeof *self->njobs);
    self->capjobs = calloc((size_t)cfg->workers, sizeof *self->capjobs);
    self->params = calloc(cfg->max_params, sizeof *self->params);
    if (!self->table || !self->targets || !self->producers || !self->ctx ||
        !self->workers || !self->jobs || !self->njobs || !self->capjobs ||
        !self->params || !self->trackq) {
        snprintf(err, errlen, "out of memory");
        evr_relay_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->targets, s_tref_destroy);
    zhashx_set_destructor(self->producers, s_producer_destroy);
    for (char **name = cfg->catalogue; name && *name; name++)
        if (evr_table_register(self->table, *name) < 0)
            zsys_warning("catalogue: ignoring bad event name '%s'", *name);
    for (int i = 0; i < self->nworkers; i++)
        if (!(self->workers[i] = evr_worker_new(self->ctx, i))) {
            snprintf(err, errlen, "cannot start worker %d", i);
            evr_relay_destroy(&self);
            return NULL;
        }
    if (s_check_plain(cfg, err, errlen)) {
        evr_relay_destroy(&self);
        return NULL;
    }
    self->auth = evr_auth_new(self->ctx, cfg, err, errlen);
    if (!self->auth && err[0]) {
        evr_relay_destroy(&self);
        return NULL;
    }
    self->topts.auth = self->auth;
    self->ingest = s_router(self->ctx, self->auth, EVR_AUTH_INGEST, cfg->ingest,
                            err, errlen);
    self->control = self->ingest
                        ? s_router(self->ctx, self->auth, EVR_AUTH_CONTROL,
                                   cfg->control, err, errlen)
                        : NULL;
    if (!self->control) {
        evr_relay_destroy(&self);
        return NULL;
    }
    if (cfg->http && *cfg->http) {
        self->http_core =
            s_router(self->ctx, NULL, -1, EVR_HTTP_CORE_ENDPOINT, err, errlen);
        evr_http_opts_t opts = {.listen = cfg->http,
                                .max_body = cfg->max_control_bytes,
                                .policy = cfg->policy,
                                .insecure = cfg->insecure,
                                .tls_cert = cfg->http_cert,
                                .tls_key = cfg->http_key};
        if (self->http_core)
            self->http = evr_http_new(&opts, self->ctx, EVR_HTTP_CORE_ENDPOINT,
                                      err, errlen);
        if (!self->http) {
            evr_relay_destroy(&self);
            return NULL;
        }
    }
    for (size_t i = 0; i < cfg->nsubs; i++) {
        char why[512];
        if (evr_relay_subscribe(self, cfg->subs[i].event, cfg->subs[i].socket,
                                EVR_EXPIRE_NEVER, why, sizeof why)) {
            snprintf(err, errlen, "static subscription %s = %s: %s",
                     cfg->subs[i].event, cfg->subs[i].socket, why);
            evr_relay_destroy(&self);
            return NULL;
        }
    }
    if (s_cluster_start(self, err, errlen)) {
        evr_relay_destroy(&self);
        return NULL;
    }
    return self;
}

//  Stop the workers, close everything, free, NULL the pointer.
void evr_relay_destroy(evr_relay_t **self_p)
{
    evr_relay_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    evr_http_destroy(&self->http); //  stops the HTTP thread first
    evr_cluster_destroy(&self->cluster);
    if (self->http_core)
        zmq_close(self->http_core);
    if (self->ingest)
        zmq_close(self->ingest);
    if (self->control)
        zmq_close(self->control);
    //  workers first: they hold references to targets
    for (int i = 0; self->workers && i < self->nworkers; i++)
        evr_worker_destroy(&self->workers[i]);
    evr_table_destroy(&self->table);
    zhashx_destroy(&self->targets);
    zhashx_destroy(&self->producers);
    //  Every delivery is released now: pending batches are finished and
    //  waiting here; they are not answered (the producers resend).
    evr_trackq_destroy(&self->trackq);
    evr_auth_destroy(&self->auth);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    for (int i = 0; self->jobs && i < self->nworkers; i++)
        free(self->jobs[i]);
    free(self->jobs);
    free(self->njobs);
    free(self->capjobs);
    free(self->workers);
    free(self->params);
    free(self->offsets);
    free(self->ackbuf);
    evr_buf_free(&self->buf);
    evr_arena_free(&self->arena);
    free(self);
}

//  --- subscriptions --------------------------------------------------------

//  The subscription table.
evr_table_t *evr_relay_table(evr_relay_t *self)
{
    return self->table;
}

//  Subscribe / refresh / unsubscribe, now.
int evr_relay_subscribe(evr_relay_t *self, const char *event,
                        const char *socket, int64_t expire_s, char *err,
                        size_t errlen)
{
    return evr_relay_subscribe_at(self, event, socket, expire_s,
                                  evr_relay_now_ms(), err, errlen);
}

//  Subscribe / refresh / unsubscribe with now_ms as the subscription time.
int evr_relay_subscribe_at(evr_relay_t *self, const char *event,
                           const char *socket, int64_t expire_s, int64_t now_ms,
                           char *err, size_t errlen)
{
    if (!evr_table_valid_name(event)) {
        snprintf(err, errlen,
                 "bad event name: 1 to %d printable characters, no spaces",
                 EVR_MAX_EVENT_NAME);
        return -1;
    }
    evr_sockspec_t *spec = evr_sockspec_parse(socket, err, errlen);
    if (!spec)
        return -1;
    int64_t now = now_ms;
    const char *canonical = evr_sockspec_canonical(spec);
    const char *match_key = evr_sockspec_match_key(spec);
    s_tref_t *tref = NULL;
    if (expire_s != 0 && !(tref = zhashx_lookup(self->targets, canonical))) {
        tref = calloc(1, sizeof *tref);
        if (tref)
            tref->target = evr_target_new(spec, &self->topts, self->next_worker,
                                          err, errlen);
        if (!tref || !tref->target) {
            free(tref);
            evr_sockspec_destroy(&spec);
            return -1;
        }
        self->next_worker = (self->next_worker + 1) % self->nworkers;
        zhashx_insert(self->targets, canonical, tref);
    }
    //  Pin the target while the table works: looking up or replacing an
    //  expired entry releases that entry's target, which may be this one.
    if (tref)
        tref->subs++;
    //  The same subscriber spelled differently (a rabbitmq `persistent`
    //  flag, another PARALLEL order): it must use the new target, so the
    //  old entry goes first.
    evr_sub_info_t info;
    if (tref &&
        evr_table_find(self->table, event, match_key, now, &info) == 0 &&
        strcmp(info.socket, canonical) != 0)
        evr_table_subscribe(self->table, event, info.socket, match_key, 0, now,
                            NULL);
    evr_table_result_t rc = evr_table_subscribe(self->table, event, canonical,
                                                match_key, expire_s, now, tref);
    if (tref && rc != EVR_TABLE_ADDED)
        s_release_tref(tref, self); //  unpin; drops a target nobody uses
    if (self->cfg->verbose)
        zsys_info("subscribe %s %s expire=%lld: %s", event, canonical,
                  (long long)expire_s,
                  rc == EVR_TABLE_ADDED       ? "added"
                  : rc == EVR_TABLE_REFRESHED ? "refreshed"
                  : rc == EVR_TABLE_REMOVED   ? "removed"
                  : rc == EVR_TABLE_NOT_FOUND ? "not subscribed"
                                              : "refused");
    evr_sockspec_destroy(&spec);
    if (rc == EVR_TABLE_ERROR) {
        snprintf(err, errlen, "event registry full or bad event name");
        return -1;
    }
    return 0;
}

//  The count limits of a new subscription of event to spec: refused (-1,
//  counted, the reason in err) when the event or the table is full; live
//  subscriptions only (a full count is checked again after a sweep).
static int s_check_counts(evr_relay_t *self, const char *event,
                          const evr_sockspec_t *spec, char *err, size_t errlen)
{
    const evr_config_t *cfg = self->cfg;
    int64_t now = evr_relay_now_ms();
    evr_sub_info_t info;
    if (evr_table_find(self->table, event, evr_sockspec_match_key(spec), now,
                       &info) == 0)
        return 0; //  a refresh adds nothing
    size_t n = evr_table_sub_count(self->table, event);
    size_t total = evr_table_size(self->table);
    if (n >= cfg->max_subs_per_event || total >= cfg->max_subscriptions) {
        self->ct.expired += evr_table_sweep(self->table, now);
        n = evr_table_sub_count(self->table, event);
        total = evr_table_size(self->table);
    }
    if (n >= cfg->max_subs_per_event) {
        self->ct.refused_event_subscriptions++;
        snprintf(err, errlen,
                 "%s has %zu subscriptions, the limit per event is %zu "
                 "([limits] max_subscriptions_per_event)",
                 event, n, cfg->max_subs_per_event);
        return -1;
    }
    if (total >= cfg->max_subscriptions) {
        self->ct.refused_subscriptions++;
        snprintf(err, errlen,
                 "the relay holds %zu subscriptions, the limit is %zu "
                 "([limits] max_subscriptions)",
                 total, cfg->max_subscriptions);
        return -1;
    }
    return 0;
}

//  Check a local subscribe against the [limits] caps before it is made.
int evr_relay_check_subscribe(evr_relay_t *self, const char *event,
                              const char *socket, int64_t expire_s, char *err,
                              size_t errlen)
{
    const evr_config_t *cfg = self->cfg;
    if (expire_s == 0)
        return 0; //  an unsubscribe adds nothing
    size_t len = event ? strlen(event) : 0;
    int rc = 0;
    evr_sockspec_t *spec = NULL;
    if (len > cfg->max_name_length) {
        self->ct.refused_name_length++;
        snprintf(err, errlen,
                 "event name of %zu characters is over the limit of %zu "
                 "([limits] max_name_length)",
                 len, cfg->max_name_length);
        rc = -1;
    } else if (!(spec = evr_sockspec_parse(socket, err, errlen)))
        return 0; //  the subscribe itself reports a bad socket
    else if (evr_sockspec_child_count(spec) > cfg->max_children) {
        self->ct.refused_children++;
        snprintf(err, errlen,
                 "virtual: %zu child sockets, more than the limit of %zu "
                 "([limits] max_children)",
                 evr_sockspec_child_count(spec), cfg->max_children);
        rc = -1;
    } else
        rc = s_check_counts(self, event, spec, err, errlen);
    if (rc && cfg->verbose)
        zsys_info("subscribe %s %s expire=%lld: refused: %s", event, socket,
                  (long long)expire_s, err);
    evr_sockspec_destroy(&spec);
    return rc;
}

//  Ask flatstore targets writing `path` to reopen. Returns how many.
size_t evr_relay_rotate(evr_relay_t *self, const char *path)
{
    size_t n = 0;
    for (s_tref_t *tref = zhashx_first(self->targets); tref;
         tref = zhashx_next(self->targets)) {
        if (evr_target_request_reopen(tref->target, path))
            n++;
    }
    return n;
}

//  --- dispatch -------------------------------------------------------------

typedef struct {
    evr_relay_t *self;
    const evr_event_view_t *ev;
    //  encodings made for this event, one reference each (held here)
    evr_msg_t *msgs[EVR_FORMAT_COUNT];
    bool failed[EVR_FORMAT_COUNT];
    evr_msg_t *bundles[1u << EVR_FORMAT_COUNT]; //  by format mask
    bool checked;                               //  the size check ran
    bool too_large; //  the event is refused for every subscriber
    int64_t raised_us;
    const char *id;     //  the event id
    evr_track_t *track; //  DELIVERED: the batch's tracker, else NULL
    uint32_t index;     //  the event's index in the batch
} s_dispatch_t;

//  Encode ev in one format. NULL when it is too large or out of memory.
static evr_msg_t *s_encode(s_dispatch_t *d, evr_format_t format)
{
    evr_relay_t *self = d->self;
    evr_buf_reset(&self->buf);
    int rc;
    if (format == EVR_FORMAT_JSONRPC)
        rc = evr_payload_jsonrpc(&self->buf, d->ev, NULL);
    else if (format == EVR_FORMAT_LEGACY)
        rc = evr_payload_legacy(&self->buf, d->ev);
    else
        rc = evr_payload_flatstore(&self->buf, d->ev, self->cfg->flat_delimiter,
                                   self->cfg->flat_suppress_name);
    if (rc || self->buf.len > self->cfg->max_event_bytes) {
        self->in.too_large++;
        return NULL;
    }
    evr_msg_t *msg =
        evr_msg_new(self->buf.data, self->buf.len, d->ev->name, d->id, 1);
    if (msg)
        msg->raised_us = d->raised_us;
    return msg;
}

//  The payload for a target consuming `formats` (a bitmask): one encoding,
//  or a bundle of several for a virtual target. Borrowed; NULL when an
//  encoding failed.
static evr_msg_t *s_payload(s_dispatch_t *d, unsigned formats)
{
    evr_msg_t *parts[EVR_FORMAT_COUNT] = {0};
    int count = 0, last = 0;
    for (int f = 0; f < EVR_FORMAT_COUNT; f++) {
        if (!(formats & (1u << f)))
            continue;
        if (!d->msgs[f] && !d->failed[f]) {
            d->msgs[f] = s_encode(d, (evr_format_t)f);
            d->failed[f] = d->msgs[f] == NULL;
        }
        if (!d->msgs[f])
            return NULL;
        parts[f] = d->msgs[f];
        count++;
        last = f;
    }
    if (count == 1)
        return d->msgs[last];
    if (!d->bundles[formats])
        d->bundles[formats] = evr_msg_bundle(parts, 1);
    return d->bundles[formats];
}

//  Append one job for a worker (with a tracker hold to take when track is
//  set: counted in track_jobs, taken before the jobs are handed over).
static int s_add_job(evr_relay_t *self, int w, evr_target_t *t, evr_msg_t *msg,
                     evr_track_t *track, uint32_t event)
{
    if (self->njobs[w] == self->capjobs[w]) {
        size_t cap = self->capjobs[w] ? self->capjobs[w] * 2 : 1024;
        evr_job_t *grown = realloc(self->jobs[w], cap * sizeof *grown);
        if (!grown)
            return -1;
        self->jobs[w] = grown;
        self->capjobs[w] = cap;
    }
    self->jobs[w][self->njobs[w]++] = (evr_job_t){t, msg, track, event};
    if (track)
        self->track_jobs++;
    return 0;
}

//  Table lookup hook: queue the event for one subscription.
static void s_on_sub(const evr_sub_info_t *info, void *arg)
{
    s_dispatch_t *d = arg;
    evr_relay_t *self = d->self;
    evr_target_t *t = ((s_tref_t *)info->target)->target;
    if (!d->checked) {
        //  The JSON-RPC notification is the largest encoding (names,
        //  quotes, escapes): its size decides for every format, so an
        //  event is refused for all its subscribers or for none.
        d->checked = true;
        d->msgs[EVR_FORMAT_JSONRPC] = s_encode(d, EVR_FORMAT_JSONRPC);
        d->failed[EVR_FORMAT_JSONRPC] = d->too_large =
            d->msgs[EVR_FORMAT_JSONRPC] == NULL;
    }
    if (d->too_large)
        return;
    //  A subscriber: from here on the event fails unless a delivery works
    if (d->track)
        evr_track_expect(d->track, d->index);
    evr_msg_t *msg = s_payload(d, evr_target_formats(t));
    if (!msg)
        return;
    if (evr_target_admit(t)) {
        self->in.queue_full++;
        return;
    }
    int w = evr_target_worker(t);
    if (s_add_job(self, w, t, msg, d->track, d->index)) {
        self->in.queue_full++;
        return;
    }
    evr_target_ref(t);
    evr_msg_ref(msg);
    self->in.delivered_to_queues++;
}

//  Queue one event with its id; returns the number of live subscriptions
//  matched, and sets *too_large (may be NULL) when the event was refused
//  for its size. track (may be NULL) gets a hold per job, for event
//  number index of its batch.
static size_t s_dispatch(evr_relay_t *self, const evr_event_view_t *ev,
                         int64_t raised_us, int64_t now_ms, bool *too_large,
                         const char *id, evr_track_t *track, uint32_t index)
{
    s_dispatch_t d = {.self = self,
                      .ev = ev,
                      .raised_us = raised_us,
                      .id = id,
                      .track = track,
                      .index = index};
    size_t before = evr_table_event_count(self->table);
    size_t n = evr_table_lookup(self->table, ev->name, now_ms, s_on_sub, &d);
    if (n == 0) {
        self->in.no_subscribers++;
        if (evr_table_event_count(self->table) == before &&
            evr_table_event_id(self->table, ev->name) < 0)
            self->in.events_overflow++;
    }
    for (size_t m = 0; m < sizeof d.bundles / sizeof *d.bundles; m++)
        evr_msg_unref(d.bundles[m]);
    for (int f = 0; f < EVR_FORMAT_COUNT; f++)
        evr_msg_unref(d.msgs[f]);
    if (d.too_large)
        self->in.refused_event_bytes++;
    if (too_large)
        *too_large = d.too_large;
    return n;
}

//  Hand the jobs collected so far to the workers.
static void s_submit(evr_relay_t *self)
{
    for (int w = 0; w < self->nworkers; w++) {
        if (!self->njobs[w])
            continue;
        if (evr_worker_submit(self->workers[w], self->jobs[w],
                              self->njobs[w]) == 0) {
            self->jobs[w] = NULL;
            self->capjobs[w] = 0;
        } else {
            //  cannot happen short of memory exhaustion; count as drops
            for (size_t i = 0; i < self->njobs[w]; i++) {
                evr_msg_unref(self->jobs[w][i].msg);
                evr_target_unref(&self->jobs[w][i].target);
                if (self->jobs[w][i].track)
                    evr_track_done(self->jobs[w][i].track,
                                   self->jobs[w][i].event, false);
            }
            self->in.queue_full += self->njobs[w];
        }
        self->njobs[w] = 0;
    }
}

//  Queue ev for every live subscriber, now.
size_t evr_relay_raise(evr_relay_t *self, const evr_event_view_t *ev,
                       size_t *queued)
{
    uint64_t before = self->in.delivered_to_queues;
    char id[S_ID_MAX];
    snprintf(id, sizeof id, "relay-%" PRId64 "-%" PRIu64, self->boot_us,
             ++self->raises);
    size_t n = s_dispatch(self, ev, evr_wall_us(), evr_relay_now_ms(), NULL, id,
                          NULL, 0);
    if (queued)
        *queued = (size_t)(self->in.delivered_to_queues - before);
    s_submit(self);
    return n;
}

//  --- ingest ---------------------------------------------------------------

//  The key of a producer instance: hex(producer id) ":" epoch.
static void s_stream_key(char *key, const uint8_t *id, size_t len,
                         uint64_t epoch)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        key[i * 2] = hex[id[i] >> 4];
        key[i * 2 + 1] = hex[id[i] & 15];
    }
    sprintf(key + len * 2, ":%" PRIu64, epoch);
}

//  The state of a producer instance, if the relay has one.
static s_producer_t *s_stream_find(evr_relay_t *self,
                                   const Evrelay__Publish *pub)
{
    char key[S_KEY_MAX];
    s_stream_key(key, pub->producer_id.data, pub->producer_id.len, pub->epoch);
    return zhashx_lookup(self->producers, key);
}

//  The state of a producer instance: p (s_stream_find's answer), or one
//  created now (the least recently seen one is forgotten when there are
//  too many). NULL when out of memory.
static s_producer_t *s_stream(evr_relay_t *self, const Evrelay__Publish *pub,
                              s_producer_t *p, int64_t now)
{
    if (!p) {
        char key[S_KEY_MAX];
        s_stream_key(key, pub->producer_id.data, pub->producer_id.len,
                     pub->epoch);
        if (zhashx_size(self->producers) >= self->cfg->max_producers) {
            const char *oldest = NULL;
            int64_t oldest_ms = INT64_MAX;
            for (s_producer_t *q = zhashx_first(self->producers); q;
                 q = zhashx_next(self->producers))
                if (q->last_seen_ms < oldest_ms) {
                    oldest_ms = q->last_seen_ms;
                    oldest = zhashx_cursor(self->producers);
                }
            if (oldest) {
                zhashx_delete(self->producers, oldest);
                self->in.producers_evicted++;
            }
        }
        p = calloc(1, sizeof *p);
        if (!p || !(p->window = evr_dedup_new(self->cfg->dedup_window))) {
            free(p);
            return NULL;
        }
        zhashx_insert(self->producers, key, p);
    }
    p->last_seen_ms = now;
    return p;
}

//  Whether seq belongs to a DELIVERED batch of this stream still in
//  progress here.
static bool s_busy_has(const s_producer_t *p, uint64_t seq)
{
    for (size_t i = 0; i < p->nbusy && p->busy[i].first <= seq; i++)
        if (seq <= p->busy[i].last)
            return true;
    return false;
}

//  Whether [first, last] meets a DELIVERED batch of this stream still in
//  progress here.
static bool s_busy_overlaps(const s_producer_t *p, uint64_t first,
                            uint64_t last)
{
    for (size_t i = 0; i < p->nbusy && p->busy[i].first <= last; i++)
        if (first <= p->busy[i].last)
            return true;
    return false;
}

//  Mark [first, last] in progress for track, keeping the list ordered by
//  first (batches mostly arrive in order: search from the end). Returns 0
//  or -1 when out of memory.
static int s_busy_add(s_producer_t *p, uint64_t first, uint64_t last,
                      const evr_track_t *track)
{
    if (p->nbusy == p->capbusy) {
        size_t cap = p->capbusy ? p->capbusy * 2 : 16;
        s_busy_t *grown = realloc(p->busy, cap * sizeof *grown);
        if (!grown)
            return -1;
        p->busy = grown;
        p->capbusy = cap;
    }
    size_t i = p->nbusy;
    while (i > 0 && p->busy[i - 1].first > first)
        i--;
    memmove(&p->busy[i + 1], &p->busy[i], (p->nbusy - i) * sizeof *p->busy);
    p->busy[i] = (s_busy_t){first, last, track};
    p->nbusy++;
    return 0;
}

//  Forget the range of track (batches mostly finish in order: search from
//  the front).
static void s_busy_remove(s_producer_t *p, const evr_track_t *track)
{
    for (size_t i = 0; i < p->nbusy; i++)
        if (p->busy[i].track == track) {
            memmove(&p->busy[i], &p->busy[i + 1],
                    (p->nbusy - i - 1) * sizeof *p->busy);
            p->nbusy--;
            return;
        }
}

//  The cumulative ack of a DELIVERED stream: received here and no longer
//  in progress (every seq <= it).
static uint64_t s_delivered_through(const s_producer_t *p)
{
    uint64_t through = evr_dedup_through(p->window);
    if (p->nbusy && p->busy[0].first <= through)
        through = p->busy[0].first - 1;
    return through;
}

//  Append an offset to the scratch list. Returns 0 or -1.
static int s_offset_add(evr_relay_t *self, uint32_t offset)
{
    if (self->noffsets == self->capoffsets) {
        size_t cap = self->capoffsets ? self->capoffsets * 2 : 64;
        uint32_t *grown = realloc(self->offsets, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->offsets = grown;
        self->capoffsets = cap;
    }
    self->offsets[self->noffsets++] = offset;
    return 0;
}

//  Send [envelope..., payload] on a ROUTER.
static void s_reply(void *sock, zmq_msg_t *env, int nenv, const void *data,
                    size_t len)
{
    for (int i = 0; i < nenv; i++)
        zmq_msg_send(&env[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, data, len, ZMQ_DONTWAIT);
}

//  Send an Ack.
static void s_send_ack(evr_relay_t *self, zmq_msg_t *env, int nenv,
                       const s_ackinfo_t *a)
{
    Evrelay__Ack ack = EVRELAY__ACK__INIT;
    ack.version = EVR_PROTOCOL_VERSION;
    ack.producer_id.data = (uint8_t *)a->producer_id;
    ack.producer_id.len = a->producer_len;
    ack.epoch = a->epoch;
    ack.first_seq = a->first_seq;
    ack.count = a->count;
    ack.acked_through = a->through;
    ack.status =
        a->error ? EVRELAY__ACK__STATUS__REJECTED : EVRELAY__ACK__STATUS__OK;
    ack.error = (char *)a->error;
    ack.has_duplicates = a->dups > 0;
    ack.duplicates = a->dups;
    ack.has_rejected = a->nrejected > 0;
    ack.rejected = a->nrejected;
    ack.n_rejected_offsets = a->nrejected;
    ack.rejected_offsets = (uint32_t *)a->rejected;
    ack.n_failed = a->nfailed;
    ack.failed = (uint32_t *)a->failed;
    size_t len = evrelay__ack__get_packed_size(&ack);
    if (len > self->ackcap) {
        uint8_t *grown = realloc(self->ackbuf, len);
        if (!grown)
            return; //  unanswered: the producer resends
        self->ackbuf = grown;
        self->ackcap = len;
    }
    evrelay__ack__pack(&ack, self->ackbuf);
    s_reply(self->ingest, env, nenv, self->ackbuf, len);
}

//  Answer a publish at once (ACCEPTED, or a batch refused as a whole).
static void s_ack(evr_relay_t *self, zmq_msg_t *env, int nenv,
                  const Evrelay__Publish *pub, uint64_t through, uint32_t dups,
                  const uint32_t *rejected, uint32_t nrejected,
                  const char *error)
{
    s_ackinfo_t a = {.producer_id = pub->producer_id.data,
                     .producer_len = pub->producer_id.len,
                     .epoch = pub->epoch,
                     .first_seq = pub->first_seq,
                     .count = (uint32_t)pub->n_events,
                     .through = through,
                     .dups = dups,
                     .rejected = rejected,
                     .nrejected = nrejected,
                     .error = error};
    s_send_ack(self, env, nenv, &a);
}

//  Tracker data destructor: close the envelope, free the lists.
static void s_pending_free(void *data)
{
    s_pending_t *pd = data;
    if (!pd)
        return;
    for (int i = 0; i < pd->nenv; i++)
        zmq_msg_close(&pd->env[i]);
    free(pd->env);
    free(pd->rejected);
    free(pd);
}

//  What the Ack of a DELIVERED batch will need, with the envelope moved in
//  (unless silent). NULL when out of memory.
static s_pending_t *s_pending_new(evr_relay_t *self, zmq_msg_t *env, int nenv,
                                  const Evrelay__Publish *pub, uint32_t dups,
                                  bool silent)
{
    s_pending_t *pd = calloc(1, sizeof *pd);
    if (!pd)
        return NULL;
    pd->silent = silent;
    if (!silent && nenv > 0) {
        pd->env = calloc((size_t)nenv, sizeof *pd->env);
        if (!pd->env) {
            free(pd);
            return NULL;
        }
        for (int i = 0; i < nenv; i++) {
            zmq_msg_init(&pd->env[i]);
            zmq_msg_move(&pd->env[i], &env[i]);
        }
        pd->nenv = nenv;
    }
    if (self->noffsets) {
        pd->rejected = malloc(self->noffsets * sizeof *pd->rejected);
        if (!pd->rejected) {
            s_pending_free(pd);
            return NULL;
        }
        memcpy(pd->rejected, self->offsets,
               self->noffsets * sizeof *pd->rejected);
        pd->nrejected = (uint32_t)self->noffsets;
    }
    memcpy(pd->producer_id, pub->producer_id.data, pub->producer_id.len);
    pd->producer_len = pub->producer_id.len;
    pd->epoch = pub->epoch;
    pd->first_seq = pub->first_seq;
    pd->count = (uint32_t)pub->n_events;
    pd->dups = dups;
    s_stream_key(pd->key, pub->producer_id.data, pub->producer_id.len,
                 pub->epoch);
    return pd;
}

//  A DELIVERED batch is final: clear its range and send its Ack, listing
//  the events no subscriber took; destroys the tracker.
static void s_track_finish(evr_relay_t *self, evr_track_t *track)
{
    s_pending_t *pd = evr_track_data(track);
    s_producer_t *p = pd ? zhashx_lookup(self->producers, pd->key) : NULL;
    if (p) {
        s_busy_remove(p, track);
        //  (a stream forgotten and seen again meanwhile counts from 0)
        p->inflight -= pd->bytes < p->inflight ? pd->bytes : p->inflight;
    }
    if (pd)
        self->inflight_bytes -= pd->bytes;
    if (pd && !pd->silent) {
        self->noffsets = 0;
        uint32_t n = evr_track_events(track);
        for (uint32_t i = 0; i < n; i++)
            if (evr_track_failed(track, i))
                s_offset_add(self, i);
        s_ackinfo_t a = {.producer_id = pd->producer_id,
                         .producer_len = pd->producer_len,
                         .epoch = pd->epoch,
                         .first_seq = pd->first_seq,
                         .count = pd->count,
                         .through = p ? s_delivered_through(p) : 0,
                         .dups = pd->dups,
                         .rejected = pd->rejected,
                         .nrejected = pd->nrejected,
                         .failed = self->offsets,
                         .nfailed = (uint32_t)self->noffsets};
        s_send_ack(self, pd->env, pd->nenv, &a);
        self->in.delivered_acks++;
        self->in.failed_events += self->noffsets;
    }
    evr_track_destroy(&track);
}

//  Answer the DELIVERED batches whose deliveries became final (bounded per
//  turn, like ingest).
static void s_drain_trackers(evr_relay_t *self)
{
    for (int round = 0; round < 4096; round++) {
        evr_track_t *track = evr_trackq_pop(self->trackq);
        if (!track)
            return;
        s_track_finish(self, track);
    }
}

//  The id prefix of a batch's events, "hex(producer id)-epoch-"; returns
//  its length.
static size_t s_id_prefix(char *id, const Evrelay__Publish *pub)
{
    s_stream_key(id, pub->producer_id.data, pub->producer_id.len, pub->epoch);
    char *colon = id + pub->producer_id.len * 2;
    *colon = '-';
    size_t len = strlen(id);
    id[len++] = '-';
    id[len] = 0;
    return len;
}

//  Answer a frame that names no batch (oversized or undecodable): an Ack
//  of no stream (empty producer_id, zero numbers) with status REJECTED and
//  the reason. Producers ignore it (PROTOCOL 4.5); a developer sees why.
static void s_refuse_frame(evr_relay_t *self, zmq_msg_t *env, int nenv,
                           const char *error)
{
    static const uint8_t none[1] = {0};
    s_ackinfo_t a = {.producer_id = none, .error = error};
    s_send_ack(self, env, nenv, &a);
}

//  Whether a DELIVERED batch of size bytes would take its producer's bytes
//  in flight (*inflight) over max_inflight_bytes. Never when nothing is in
//  flight (one batch always fits), nor for a resend that meets a batch
//  still in progress here (the original's Ack answers it).
static bool s_inflight_full(evr_relay_t *self, const s_producer_t *p,
                            const Evrelay__Publish *pub, size_t size,
                            size_t *inflight)
{
    *inflight = p ? p->inflight : 0;
    if (!p || p->inflight == 0 ||
        p->inflight + size <= self->cfg->max_inflight_bytes)
        return false;
    return pub->n_events == 0 ||
           !s_busy_overlaps(p, pub->first_seq,
                            pub->first_seq + pub->n_events - 1);
}

//  Why a well-formed Publish (received in payload) is refused as a whole
//  (counted; the reason written into why), or NULL when it is accepted.
static const char *s_refusal(evr_relay_t *self, const Evrelay__Publish *pub,
                             const s_producer_t *stream, zmq_msg_t *payload,
                             char *why, size_t whylen)
{
    const evr_config_t *cfg = self->cfg;
    size_t size = zmq_msg_size(payload);
    size_t inflight;
    if (!evr_auth_permits(self->auth, EVR_AUTH_INGEST, payload))
        return "forbidden: the producer's certificate was revoked";
    if (pub->n_events > cfg->max_batch_events) {
        self->in.refused_batch_events++;
        snprintf(why, whylen,
                 "batch of %zu events is over the limit of %zu ([limits] "
                 "max_batch_events)",
                 pub->n_events, cfg->max_batch_events);
        return why;
    }
    if (pub->has_ack_point && pub->ack_point == EVRELAY__ACK_POINT__DELIVERED &&
        s_inflight_full(self, stream, pub, size, &inflight)) {
        self->in.refused_inflight++;
        snprintf(why, whylen,
                 "producer has %zu bytes in flight; this batch of %zu bytes "
                 "would exceed the limit of %zu ([limits] "
                 "max_inflight_bytes)",
                 inflight, size, cfg->max_inflight_bytes);
        return why;
    }
    return NULL;
}

//  Whether event e is refused before delivery (counted): a name over
//  max_name_length, a bad name, too many params. Fills *view otherwise.
static bool s_event_refused(evr_relay_t *self, const Evrelay__Event *e,
                            evr_event_view_t *view)
{
    if (e->name && strlen(e->name) > self->cfg->max_name_length) {
        self->in.refused_name_length++;
        return true;
    }
    int rc = evr_decode_event(e, self->params, self->cfg->max_params, view);
    if (rc == EVR_DECODE_TOO_MANY_PARAMS)
        self->in.refused_params++;
    return rc != EVR_DECODE_OK;
}

//  Handle one publish frame.
static void s_on_publish(evr_relay_t *self, zmq_msg_t *env, int nenv,
                         zmq_msg_t *payload)
{
    size_t size = zmq_msg_size(payload);
    char why[256];
    Evrelay__Publish *pub;
    evr_decode_rc_t decoded =
        evr_decode_publish(zmq_msg_data(payload), size,
                           self->cfg->max_frame_bytes, &self->arena.pb, &pub);
    if (decoded == EVR_DECODE_TOO_LARGE) {
        //  no batch can be identified: counted, answered for no stream
        self->in.too_large++;
        self->in.refused_frame_bytes++;
        snprintf(why, sizeof why,
                 "frame of %zu bytes is over the limit of %zu bytes "
                 "([limits] max_frame_bytes)",
                 size, self->cfg->max_frame_bytes);
        s_refuse_frame(self, env, nenv, why);
        return;
    }
    if (decoded == EVR_DECODE_MALFORMED) {
        self->in.malformed++;
        s_refuse_frame(self, env, nenv,
                       "undecodable frame: not a protobuf Publish");
        evr_arena_reset(&self->arena);
        return;
    }
    const char *refused = NULL;
    s_producer_t *known = NULL; //  one lookup per batch
    if (decoded == EVR_DECODE_BAD_VERSION) {
        self->in.bad_version++;
        refused = "unsupported protocol version";
    } else if (decoded == EVR_DECODE_BAD_HEADER) {
        self->in.malformed++;
        refused = "bad producer_id or first_seq";
    } else {
        known = s_stream_find(self, pub);
        refused = s_refusal(self, pub, known, payload, why, sizeof why);
    }
    if (refused) {
        s_ack(self, env, nenv, pub, 0, 0, NULL, 0, refused);
        evr_arena_reset(&self->arena);
        return;
    }
    bool delivered =
        pub->has_ack_point && pub->ack_point == EVRELAY__ACK_POINT__DELIVERED;
    bool none =
        pub->has_ack_point && pub->ack_point == EVRELAY__ACK_POINT__NONE;
    evr_track_t *track = NULL;
    if (delivered &&
        !(track = evr_track_new(self->trackq, (uint32_t)pub->n_events))) {
        //  out of memory: nothing recorded, unanswered; the producer resends
        evr_arena_reset(&self->arena);
        return;
    }
    int64_t now = evr_relay_now_ms();
    s_producer_t *stream = s_stream(self, pub, known, now);
    evr_dedup_t *window = stream ? stream->window : NULL;
    uint32_t dups = 0;
    bool held = false;
    char id[S_ID_MAX];
    size_t prefix = s_id_prefix(id, pub);
    self->noffsets = 0;
    self->track_jobs = 0;
    self->in.batches++;
    for (size_t i = 0; i < pub->n_events; i++) {
        self->in.received++;
        uint64_t seq = pub->first_seq + i;
        evr_dedup_result_t seen =
            window ? evr_dedup_check(window, seq) : EVR_DEDUP_NEW;
        if (seen == EVR_DEDUP_DUPLICATE) {
            self->in.duplicates++;
            dups++;
            //  its first delivery may still be in progress here
            if (track && stream && s_busy_has(stream, seq))
                held = true;
            continue;
        }
        if (seen == EVR_DEDUP_STALE)
            self->in.stale++;
        const Evrelay__Event *e = pub->events[i];
        evr_event_view_t view;
        if (s_event_refused(self, e, &view)) {
            self->in.rejected++;
            s_offset_add(self, (uint32_t)i);
            continue;
        }
        snprintf(id + prefix, sizeof id - prefix, "%" PRIu64, seq);
        bool too_large = false;
        s_dispatch(self, &view, e->has_raised_us ? (int64_t)e->raised_us : 0,
                   now, &too_large, id, track, (uint32_t)i);
        if (too_large) {
            self->in.rejected++;
            s_offset_add(self, (uint32_t)i);
        }
    }
    if (track && self->track_jobs)
        evr_track_hold(track, self->track_jobs);
    s_submit(self);
    if (!track) {
        if (none)
            self->in.unacked++;
        else
            s_ack(self, env, nenv, pub, window ? evr_dedup_through(window) : 0,
                  dups, self->offsets, (uint32_t)self->noffsets, NULL);
        evr_arena_reset(&self->arena);
        return;
    }
    self->in.delivered_batches++;
    if (held)
        self->in.held_back++;
    s_pending_t *pd = s_pending_new(self, env, nenv, pub, dups, held);
    //  out of memory: the batch is delivered but not answered (resent)
    evr_track_set_data(track, pd, s_pending_free);
    if (pd && stream) {
        pd->bytes = size;
        stream->inflight += size;
        self->inflight_bytes += size;
    }
    if (stream && pd && pub->n_events > 0 &&
        s_busy_add(stream, pub->first_seq, pub->first_seq + pub->n_events - 1,
                   track))
        pd->silent = true; //  not tracked as busy: never answer it
    if (evr_track_release(track))
        s_track_finish(self, track);
    evr_arena_reset(&self->arena);
}

//  Receive one multipart message: envelope frames and the last frame.
//  Returns the number of envelope frames, or -1 when nothing was read.
static int s_recv(void *sock, zmq_msg_t *env, zmq_msg_t *payload)
{
    int nenv = 0;
    zmq_msg_init(payload);
    if (zmq_msg_recv(payload, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(payload);
        return -1;
    }
    while (zmq_msg_more(payload)) {
        if (nenv < MAX_ENVELOPE) {
            env[nenv] = *payload; //  move
            nenv++;
        } else
            zmq_msg_close(payload);
        zmq_msg_init(payload);
        if (zmq_msg_recv(payload, sock, 0) < 0)
            break;
    }
    return nenv;
}

//  Close envelope frames that were not sent.
static void s_close_env(zmq_msg_t *env, int nenv)
{
    for (int i = 0; i < nenv; i++)
        zmq_msg_close(&env[i]);
}

//  Handle everything waiting on the ingest socket (bounded, so control
//  requests and timers get their turn).
static void s_drain_ingest(evr_relay_t *self)
{
    zmq_msg_t env[MAX_ENVELOPE], payload;
    for (int round = 0; round < 256; round++) {
        int nenv = s_recv(self->ingest, env, &payload);
        if (nenv < 0)
            return;
        s_on_publish(self, env, nenv, &payload);
        zmq_msg_close(&payload);
        s_close_env(env, nenv);
    }
}

//  A control answer and its envelope, waiting to be sent.
typedef struct {
    zmq_msg_t env[MAX_ENVELOPE];
    int nenv;
    void *reply;
    size_t len;
} s_answer_t;

#define S_GROUP 64

//  Send answers, after the cluster's log is on disk up to their writes.
static void s_answer_all(evr_relay_t *self, void *sock, s_answer_t *ans, int n)
{
    if (self->cluster && n)
        evr_cluster_sync(self->cluster);
    for (int i = 0; i < n; i++) {
        if (ans[i].reply)
            s_reply(sock, ans[i].env, ans[i].nenv, ans[i].reply, ans[i].len);
        free(ans[i].reply);
        s_close_env(ans[i].env, ans[i].nenv);
    }
}

//  The operator a control request speaks for, valid while payload and the
//  envelope are open. The HTTP face's DEALER sends the name its
//  credentials gave as the frame before the request: it is taken off the
//  envelope (the inproc socket is reachable only from this process). On
//  the control socket it is the ZAP User-Id that CURVE authentication set,
//  or EVR_POLICY_LOCAL without one.
static const char *s_caller(evr_relay_t *self, void *sock, zmq_msg_t *env,
                            int *nenv, zmq_msg_t *payload, char *name,
                            size_t size)
{
    if (sock == self->http_core) {
        if (*nenv < 2)
            return EVR_POLICY_LOCAL;
        zmq_msg_t *frame = &env[*nenv - 1];
        size_t len = zmq_msg_size(frame);
        snprintf(name, size, "%.*s", (int)(len < size ? len : size - 1),
                 (const char *)zmq_msg_data(frame));
        zmq_msg_close(frame);
        (*nenv)--;
        return name;
    }
    const char *user = zmq_msg_gets(payload, "User-Id");
    return user && *user ? user : EVR_POLICY_LOCAL;
}

//  Handle everything waiting on a control socket: the control ROUTER, or
//  the HTTP face's (the same commands, the same code path).
//  Answers are held back (at most S_GROUP) until the cluster's log is on
//  disk (group commit: one fsync for every write among them).
static void s_drain_control(evr_relay_t *self, void *sock)
{
    s_answer_t ans[S_GROUP];
    zmq_msg_t payload;
    int n = 0;
    while (true) {
        int nenv = s_recv(sock, ans[n].env, &payload);
        if (nenv < 0)
            break;
        char name[EVR_POLICY_NAME_MAX + 1];
        const char *who = s_caller(self, sock, ans[n].env, &nenv, &payload,
                                   name, sizeof name);
        ans[n].nenv = nenv;
        ans[n].reply = NULL;
        ans[n].len = 0;
        if (sock == self->control &&
            !evr_auth_permits(self->auth, EVR_AUTH_CONTROL, &payload))
            evr_control_refuse(zmq_msg_data(&payload), zmq_msg_size(&payload),
                               "the operator's certificate was revoked",
                               &self->ct, &ans[n].reply, &ans[n].len);
        else
            evr_control_frame(self, who, zmq_msg_data(&payload),
                              zmq_msg_size(&payload),
                              self->cfg->max_control_bytes, &self->ct,
                              &ans[n].reply, &ans[n].len);
        zmq_msg_close(&payload);
        if (++n == S_GROUP) {
            s_answer_all(self, sock, ans, n);
            n = 0;
        }
    }
    s_answer_all(self, sock, ans, n);
}

//  Read what the signalfd holds: SIGHUP reopens flatstore files and
//  reloads the HTTPS certificate. Returns true when a stop was asked
//  (SIGINT, SIGTERM).
static bool s_on_signals(evr_relay_t *self, int sfd)
{
    bool stop = false, hup = false;
    struct signalfd_siginfo info;
    while (read(sfd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGHUP)
            hup = true;
        else
            stop = true;
    }
    if (hup) {
        evr_target_reopen_all();
        zsys_info("SIGHUP: reopening flatstore files");
        char why[512];
        if (evr_http_reload(self->http, why, sizeof why))
            zsys_error("SIGHUP: %s", why);
    }
    return stop;
}

//  Serve until SIGINT/SIGTERM.
int evr_relay_run(evr_relay_t *self)
{
    //  The signals stay blocked (evr_relay_new) and arrive through a
    //  signalfd the loop polls: one that comes between two polls is not
    //  missed, as it would be by a handler setting a flag just before
    //  zmq_poll goes to sleep.
    sigset_t set = s_core_signals();
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        zsys_error("signalfd: %s", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    zsys_info("evrelayd ready: ingest %s, control %s, %d worker(s)",
              self->cfg->ingest, self->cfg->control, self->nworkers);
    int64_t next_sweep = evr_relay_now_ms() + self->cfg->sweep_ms;
    bool stop = false;
    while (!stop) {
        zmq_pollitem_t items[5 + EVR_CLUSTER_MAX_POLL] = {
            {self->ingest, 0, ZMQ_POLLIN, 0},
            {self->control, 0, ZMQ_POLLIN, 0},
            {NULL, evr_trackq_fd(self->trackq), ZMQ_POLLIN, 0},
            {NULL, sfd, ZMQ_POLLIN, 0},
            {self->http_core, 0, ZMQ_POLLIN, 0}};
        int64_t now = evr_relay_now_ms();
        long timeout = next_sweep > now ? (long)(next_sweep - now) : 0;
        //  the cluster's sockets follow ours, and its timers bound the wait
        size_t nbase = self->http_core ? 5 : 4, ncluster = 0;
        if (self->cluster) {
            ncluster = evr_cluster_poll_items(self->cluster, items + nbase,
                                              EVR_CLUSTER_MAX_POLL);
            long left = evr_cluster_timeout(self->cluster);
            timeout = left < timeout ? left : timeout;
        }
        int rc = zmq_poll(items, (int)(nbase + ncluster), timeout);
        if (rc < 0 && zmq_errno() != EINTR)
            break;
        if (rc > 0 && (items[3].revents & ZMQ_POLLIN))
            stop = s_on_signals(self, sfd);
        if (rc > 0 && (items[2].revents & ZMQ_POLLIN))
            s_drain_trackers(self);
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN))
            s_drain_control(self, self->control);
        if (rc > 0 && self->http_core && (items[4].revents & ZMQ_POLLIN))
            s_drain_control(self, self->http_core);
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            s_drain_ingest(self);
        if (self->cluster)
            evr_cluster_poll_handle(self->cluster, items + nbase,
                                    rc > 0 ? ncluster : 0);
        now = evr_relay_now_ms();
        if (now >= next_sweep) {
            self->ct.expired += evr_table_sweep(self->table, now);
            next_sweep = now + self->cfg->sweep_ms;
        }
    }
    close(sfd);
    zsys_info("evrelayd stopping");
    return 0;
}

//  Ready to serve: true once the relay runs; a clustered relay only once
//  it has joined (its table is in sync).
bool evr_relay_ready(evr_relay_t *self)
{
    return !self->cluster || evr_cluster_ready(self->cluster);
}

//  --- policy ---------------------------------------------------------------

//  The access policy.
const evr_policy_rules_t *evr_relay_policy(evr_relay_t *self)
{
    return self->cfg->policy;
}

//  The counters of requests the policy refused.
evr_policy_stats_t *evr_relay_policy_stats(evr_relay_t *self)
{
    return &self->pol;
}

//  --- stats ----------------------------------------------------------------

//  Sort helper for targets by socket.
static int s_cmp_tref(const void *a, const void *b)
{
    const s_tref_t *x = *(s_tref_t *const *)a, *y = *(s_tref_t *const *)b;
    return strcmp(evr_target_socket(x->target), evr_target_socket(y->target));
}

//  A latency percentile from a target's histogram: the upper bound of the
//  bucket holding it (-1 when nothing was measured, or beyond the last
//  bound).
static int64_t s_percentile(const evr_target_stats_t *st, double q)
{
    uint64_t total = 0, seen = 0;
    for (size_t b = 0; b <= EVR_LATENCY_BUCKETS; b++)
        total += st->latency_count[b];
    if (total == 0)
        return -1;
    uint64_t rank = (uint64_t)((double)total * q);
    for (size_t b = 0; b < EVR_LATENCY_BUCKETS; b++) {
        seen += st->latency_count[b];
        if (seen > rank)
            return (int64_t)evr_latency_bounds_us[b];
    }
    return -1;
}

//  A target's latency histogram: bucket upper bounds (us), the count of
//  each bucket (not cumulative; one more than bounds: the last bucket is
//  unbounded) and the sum of the latencies (us).
static json_t *s_latency_json(const evr_target_stats_t *st)
{
    json_t *le = json_array(), *counts = json_array();
    for (size_t b = 0; b <= EVR_LATENCY_BUCKETS; b++) {
        if (b < EVR_LATENCY_BUCKETS)
            json_array_append_new(
                le, json_integer((json_int_t)evr_latency_bounds_us[b]));
        json_array_append_new(counts,
                              json_integer((json_int_t)st->latency_count[b]));
    }
    return json_pack("{s:o,s:o,s:I}", "le", le, "counts", counts, "sum",
                     (json_int_t)st->latency_sum_us);
}

//  One target's counters (with its children, for a virtual target).
static json_t *s_target_json(const evr_target_t *t, size_t subs)
{
    evr_target_stats_t st;
    evr_target_stats(t, &st);
    json_t *o = json_object();
    json_object_set_new(o, "socket", json_string(evr_target_socket(t)));
    json_object_set_new(o, "transport", json_string(evr_target_transport(t)));
    if (subs)
        json_object_set_new(o, "subscriptions", json_integer((json_int_t)subs));
    json_object_set_new(o, "delivered", json_integer((json_int_t)st.delivered));
    json_object_set_new(o, "failed", json_integer((json_int_t)st.failed));
    json_object_set_new(o, "dropped", json_integer((json_int_t)st.dropped));
    json_object_set_new(o, "queued", json_integer((json_int_t)st.queued));
    json_object_set_new(o, "latency_p50_us",
                        json_integer(s_percentile(&st, 0.50)));
    json_object_set_new(o, "latency_p99_us",
                        json_integer(s_percentile(&st, 0.99)));
    json_object_set_new(o, "latency_buckets_us", s_latency_json(&st));
    size_t n = evr_target_child_count(t);
    if (n) {
        json_t *children = json_array();
        for (size_t c = 0; c < n; c++)
            json_array_append_new(children,
                                  s_target_json(evr_target_child(t, c), 0));
        json_object_set_new(o, "children", children);
    }
    return o;
}

//  The security counters: per socket, handshakes and refusals.
static json_t *s_security_json(evr_auth_t *auth)
{
    json_t *root = json_object();
    json_object_set_new(root, "curve", json_boolean(auth != NULL));
    for (int d = 0; auth && d < EVR_AUTH_DOMAINS; d++) {
        evr_auth_counts_t c;
        evr_auth_counts(auth, (evr_auth_domain_t)d, &c);
        json_object_set_new(root, evr_auth_domain_name((evr_auth_domain_t)d),
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "keys",
                                      (json_int_t)c.keys, "allowed",
                                      (json_int_t)c.allowed, "denied",
                                      (json_int_t)c.denied, "handshake_failed",
                                      (json_int_t)c.handshake_failed, "revoked",
                                      (json_int_t)c.revoked));
    }
    return root;
}

//  Everything `evrelayctl stats` shows.
json_t *evr_relay_stats(evr_relay_t *self)
{
    json_t *root = json_object();
    json_object_set_new(
        root, "uptime_s",
        json_integer((evr_relay_now_ms() - self->start_ms) / 1000));
    json_object_set_new(root, "ingest", evr_stats_ingest_json(&self->in));
    //  the HTTP face refuses oversized bodies itself (413): counted there
    evr_control_stats_t ct = self->ct;
    if (self->http)
        ct.too_large += evr_http_too_large(self->http);
    json_object_set_new(root, "control", evr_stats_control_json(&ct));
    json_t *table = json_object();
    json_object_set_new(table, "subscriptions",
                        json_integer((json_int_t)evr_table_size(self->table)));
    json_object_set_new(
        table, "events",
        json_integer((json_int_t)evr_table_event_count(self->table)));
    json_object_set_new(table, "producers",
                        json_integer((json_int_t)zhashx_size(self->producers)));
    json_object_set_new(
        table, "pending_batches",
        json_integer((json_int_t)evr_trackq_live(self->trackq)));
    json_object_set_new(table, "inflight_bytes",
                        json_integer((json_int_t)self->inflight_bytes));
    json_object_set_new(root, "table", table);
    if (self->cluster)
        json_object_set_new(root, "cluster", evr_cluster_stats(self->cluster));
    size_t n = zhashx_size(self->targets), i = 0;
    s_tref_t **list = calloc(n ? n : 1, sizeof *list);
    json_t *targets = json_array();
    for (s_tref_t *t = zhashx_first(self->targets); list && t;
         t = zhashx_next(self->targets))
        list[i++] = t;
    if (list)
        qsort(list, i, sizeof *list, s_cmp_tref);
    for (size_t k = 0; k < i; k++)
        json_array_append_new(targets,
                              s_target_json(list[k]->target, list[k]->subs));
    free(list);
    json_object_set_new(root, "targets", targets);
    json_object_set_new(root, "security", s_security_json(self->auth));
    json_object_set_new(
        root, "policy",
        evr_stats_policy_json(&self->pol, evr_http_unauthorized(self->http)));
    return root;
}

/*  evr_relay.c - the relay core: ingest, control, table, dispatch.

    Ingest path, per Publish frame (ROUTER: envelope frames, then the
    payload as the last frame):
      size check -> protobuf decode (into a per-frame arena) -> version
      check -> de-duplication window of (producer, epoch) -> per event:
      validate, look the name up in the table, encode each payload format
      at most once, admit into each target's bounded queue -> hand the jobs
      to the workers -> Ack (cumulative + this batch's range).
    The ack point is "accepted": queued on this relay.
*/
#include "evr_relay.h"
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
#include "evr_worker.h"
#include "evrelay.pb-c.h"

#include <czmq.h>
#include <signal.h>

#define MAX_ENVELOPE 16

//  A registry entry: one target and how many subscriptions use it.
typedef struct {
    evr_target_t *target;
    size_t subs;
} s_tref_t;

//  The de-duplication state of one producer instance.
typedef struct {
    evr_dedup_t *window;
    int64_t last_seen_ms;
} s_producer_t;

//  A bump allocator for protobuf-c: one decode, one reset.
typedef struct {
    char *base;
    size_t used, cap;
    size_t oversize; //  bytes handed out with malloc when base was full
    void **big;      //  those blocks
    size_t nbig, bigcap;
} s_arena_t;

struct _evr_relay_t {
    const evr_config_t *cfg;
    void *ctx;
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
    int64_t start_ms;
    //  Per-dispatch scratch: jobs per worker.
    evr_job_t **jobs;
    size_t *njobs, *capjobs;
    evr_buf_t buf;
    s_arena_t arena;
    ProtobufCAllocator pballoc;
    evr_target_opts_t topts;
    evr_param_t *params;    //  max_params views for the event being decoded
    evr_cluster_t *cluster; //  replication + persistence (NULL = off)
};

static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_hup;

//  Signal handler: remember what arrived; the loop acts on it.
static void s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_hup = 1;
    else
        s_stop = 1;
}

//  The relay's clock, ms since the epoch.
int64_t evr_relay_now_ms(void)
{
    return zclock_time();
}

//  --- arena allocator for protobuf-c ---------------------------------------

//  protobuf-c alloc hook: bump-allocate, 16-byte aligned.
static void *s_arena_alloc(void *data, size_t size)
{
    s_arena_t *a = data;
    size = (size + 15) & ~(size_t)15;
    if (a->used + size <= a->cap) {
        void *p = a->base + a->used;
        a->used += size;
        return p;
    }
    if (a->nbig == a->bigcap) {
        size_t cap = a->bigcap ? a->bigcap * 2 : 16;
        void **grown = realloc(a->big, cap * sizeof *grown);
        if (!grown)
            return NULL;
        a->big = grown;
        a->bigcap = cap;
    }
    void *p = malloc(size);
    if (p) {
        a->big[a->nbig++] = p;
        a->oversize += size;
    }
    return p;
}

//  protobuf-c free hook: nothing, the arena is reset per frame.
static void s_arena_free(void *data, void *ptr)
{
}

//  Forget every allocation; grow the base block if the last frame needed
//  more, so the steady state does no malloc at all.
static void s_arena_reset(s_arena_t *a)
{
    for (size_t i = 0; i < a->nbig; i++)
        free(a->big[i]);
    a->nbig = 0;
    if (a->oversize && a->cap + a->oversize <= 64 * 1024 * 1024) {
        size_t cap = (a->cap + a->oversize) * 2;
        char *base = malloc(cap);
        if (base) {
            free(a->base);
            a->base = base;
            a->cap = cap;
        }
    }
    a->oversize = 0;
    a->used = 0;
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
        free(p);
    }
}

//  --- cluster --------------------------------------------------------------

//  Cluster apply hook: make the table agree with a replicated record. A
//  static subscription of the same key stays as configured.
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
    self->cluster = evr_cluster_new(self->ctx, self->cfg, s_cluster_apply, self,
                                    err, errlen);
    return self->cluster ? 0 : -1;
}

//  The cluster, or NULL when the relay is neither clustered nor
//  persistent.
evr_cluster_t *evr_relay_cluster(evr_relay_t *self)
{
    return self->cluster;
}

//  --- construction ---------------------------------------------------------

//  Create a ROUTER bound to endpoint.
static void *s_router(void *ctx, const char *endpoint, char *err, size_t errlen)
{
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0, hwm = 100000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(sock, endpoint)) {
        snprintf(err, errlen, "cannot bind %s: %s", endpoint,
                 zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

//  Create the relay.
evr_relay_t *evr_relay_new(const evr_config_t *cfg, char *err, size_t errlen)
{
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
    self->topts.amqp_heartbeat_s = cfg->amqp_heartbeat_s;
    self->pballoc =
        (ProtobufCAllocator){s_arena_alloc, s_arena_free, &self->arena};
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
        !self->params) {
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
    self->ingest = s_router(self->ctx, cfg->ingest, err, errlen);
    self->control =
        self->ingest ? s_router(self->ctx, cfg->control, err, errlen) : NULL;
    if (!self->control) {
        evr_relay_destroy(&self);
        return NULL;
    }
    if (cfg->http && *cfg->http) {
        self->http_core =
            s_router(self->ctx, EVR_HTTP_CORE_ENDPOINT, err, errlen);
        if (self->http_core)
            self->http =
                evr_http_new(cfg->http, self->ctx, EVR_HTTP_CORE_ENDPOINT,
                             cfg->max_control_bytes, err, errlen);
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
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    for (int i = 0; self->jobs && i < self->nworkers; i++)
        free(self->jobs[i]);
    free(self->jobs);
    free(self->njobs);
    free(self->capjobs);
    free(self->workers);
    free(self->params);
    evr_buf_free(&self->buf);
    s_arena_reset(&self->arena);
    free(self->arena.base);
    free(self->arena.big);
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
    evr_msg_t *msg = evr_msg_new(self->buf.data, self->buf.len, d->ev->name, 1);
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

//  Append one job for a worker.
static int s_add_job(evr_relay_t *self, int w, evr_target_t *t, evr_msg_t *msg)
{
    if (self->njobs[w] == self->capjobs[w]) {
        size_t cap = self->capjobs[w] ? self->capjobs[w] * 2 : 1024;
        evr_job_t *grown = realloc(self->jobs[w], cap * sizeof *grown);
        if (!grown)
            return -1;
        self->jobs[w] = grown;
        self->capjobs[w] = cap;
    }
    self->jobs[w][self->njobs[w]++] = (evr_job_t){t, msg};
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
    evr_msg_t *msg = s_payload(d, evr_target_formats(t));
    if (!msg)
        return;
    if (evr_target_admit(t)) {
        self->in.queue_full++;
        return;
    }
    int w = evr_target_worker(t);
    if (s_add_job(self, w, t, msg)) {
        self->in.queue_full++;
        return;
    }
    evr_target_ref(t);
    evr_msg_ref(msg);
    self->in.delivered_to_queues++;
}

//  Queue one event; returns the number of live subscriptions matched, and
//  sets *too_large (may be NULL) when the event was refused for its size.
static size_t s_dispatch(evr_relay_t *self, const evr_event_view_t *ev,
                         int64_t raised_us, int64_t now_ms, bool *too_large)
{
    s_dispatch_t d = {.self = self, .ev = ev, .raised_us = raised_us};
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
    size_t n = s_dispatch(self, ev, evr_wall_us(), evr_relay_now_ms(), NULL);
    if (queued)
        *queued = (size_t)(self->in.delivered_to_queues - before);
    s_submit(self);
    return n;
}

//  --- ingest ---------------------------------------------------------------

//  The de-duplication window of a producer instance (created on demand;
//  the least recently seen one is forgotten when there are too many).
static evr_dedup_t *s_window(evr_relay_t *self, const Evrelay__Publish *pub,
                             int64_t now)
{
    char key[64 * 2 + 32];
    size_t len = pub->producer_id.len;
    for (size_t i = 0; i < len; i++)
        sprintf(key + i * 2, "%02x", pub->producer_id.data[i]);
    sprintf(key + len * 2, ":%" PRIu64, pub->epoch);
    s_producer_t *p = zhashx_lookup(self->producers, key);
    if (!p) {
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
    return p->window;
}

//  Send [envelope..., payload] on a ROUTER.
static void s_reply(void *sock, zmq_msg_t *env, int nenv, const void *data,
                    size_t len)
{
    for (int i = 0; i < nenv; i++)
        zmq_msg_send(&env[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, data, len, ZMQ_DONTWAIT);
}

//  Answer a publish with an Ack.
static void s_ack(evr_relay_t *self, zmq_msg_t *env, int nenv,
                  const Evrelay__Publish *pub, uint64_t through, uint32_t dups,
                  uint32_t rejected, const char *error)
{
    Evrelay__Ack ack = EVRELAY__ACK__INIT;
    ack.version = EVR_PROTOCOL_VERSION;
    if (pub) {
        ack.producer_id = pub->producer_id;
        ack.epoch = pub->epoch;
        ack.first_seq = pub->first_seq;
        ack.count = (uint32_t)pub->n_events;
    }
    ack.acked_through = through;
    ack.status =
        error ? EVRELAY__ACK__STATUS__REJECTED : EVRELAY__ACK__STATUS__OK;
    ack.error = (char *)error;
    ack.has_duplicates = dups > 0;
    ack.duplicates = dups;
    ack.has_rejected = rejected > 0;
    ack.rejected = rejected;
    uint8_t out[512];
    size_t len = evrelay__ack__get_packed_size(&ack);
    if (len <= sizeof out) {
        evrelay__ack__pack(&ack, out);
        s_reply(self->ingest, env, nenv, out, len);
    }
}

//  Handle one publish frame.
static void s_on_publish(evr_relay_t *self, zmq_msg_t *env, int nenv,
                         zmq_msg_t *payload)
{
    size_t size = zmq_msg_size(payload);
    if (size > self->cfg->max_frame_bytes) {
        //  no batch can be identified: counted, not answered (PROTOCOL 4.5)
        self->in.too_large++;
        return;
    }
    Evrelay__Publish *pub =
        evrelay__publish__unpack(&self->pballoc, size, zmq_msg_data(payload));
    const char *refused = NULL;
    if (!pub)
        self->in.malformed++;
    else if (pub->version != EVR_PROTOCOL_VERSION) {
        self->in.bad_version++;
        refused = "unsupported protocol version";
    } else if (pub->producer_id.len == 0 || pub->producer_id.len > 64 ||
               pub->first_seq == 0 ||
               (pub->n_events > 0 &&
                pub->first_seq + (pub->n_events - 1) < pub->first_seq)) {
        self->in.malformed++;
        refused = "bad producer_id or first_seq";
    }
    if (!pub || refused) {
        if (pub)
            s_ack(self, env, nenv, pub, 0, 0, 0, refused);
        s_arena_reset(&self->arena);
        return;
    }
    int64_t now = evr_relay_now_ms();
    evr_dedup_t *window = s_window(self, pub, now);
    uint32_t dups = 0, rejected = 0;
    evr_param_t *params = self->params;
    self->in.batches++;
    for (size_t i = 0; i < pub->n_events; i++) {
        self->in.received++;
        evr_dedup_result_t seen =
            window ? evr_dedup_check(window, pub->first_seq + i)
                   : EVR_DEDUP_NEW;
        if (seen == EVR_DEDUP_DUPLICATE) {
            self->in.duplicates++;
            dups++;
            continue;
        }
        if (seen == EVR_DEDUP_STALE)
            self->in.stale++;
        const Evrelay__Event *e = pub->events[i];
        evr_event_view_t view;
        if (evr_decode_event(e, params, self->cfg->max_params, &view)) {
            self->in.rejected++;
            rejected++;
            continue;
        }
        bool too_large = false;
        s_dispatch(self, &view, e->has_raised_us ? (int64_t)e->raised_us : 0,
                   now, &too_large);
        if (too_large) {
            self->in.rejected++;
            rejected++;
        }
    }
    s_submit(self);
    s_ack(self, env, nenv, pub, window ? evr_dedup_through(window) : 0, dups,
          rejected, NULL);
    s_arena_reset(&self->arena);
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
        ans[n].nenv = nenv;
        ans[n].reply = NULL;
        ans[n].len = 0;
        evr_control_frame(self, zmq_msg_data(&payload), zmq_msg_size(&payload),
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

//  Serve until SIGINT/SIGTERM.
int evr_relay_run(evr_relay_t *self)
{
    struct sigaction sa = {0};
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    zsys_info("evrelayd ready: ingest %s, control %s, %d worker(s)",
              self->cfg->ingest, self->cfg->control, self->nworkers);
    int64_t next_sweep = evr_relay_now_ms() + self->cfg->sweep_ms;
    while (!s_stop) {
        zmq_pollitem_t items[3 + EVR_CLUSTER_MAX_POLL] = {
            {self->ingest, 0, ZMQ_POLLIN, 0},
            {self->control, 0, ZMQ_POLLIN, 0},
            {self->http_core, 0, ZMQ_POLLIN, 0}};
        int64_t now = evr_relay_now_ms();
        long timeout = next_sweep > now ? (long)(next_sweep - now) : 0;
        //  the cluster's sockets follow ours, and its timers bound the wait
        size_t nbase = self->http_core ? 3 : 2, ncluster = 0;
        if (self->cluster) {
            ncluster = evr_cluster_poll_items(self->cluster, items + nbase,
                                              EVR_CLUSTER_MAX_POLL);
            long left = evr_cluster_timeout(self->cluster);
            timeout = left < timeout ? left : timeout;
        }
        int rc = zmq_poll(items, (int)(nbase + ncluster), timeout);
        if (rc < 0 && zmq_errno() != EINTR)
            break;
        if (s_hup) {
            s_hup = 0;
            evr_target_reopen_all();
            zsys_info("SIGHUP: reopening flatstore files");
        }
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN))
            s_drain_control(self, self->control);
        if (rc > 0 && self->http_core && (items[2].revents & ZMQ_POLLIN))
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
    zsys_info("evrelayd stopping");
    return 0;
}

//  Ready to serve: true once the relay runs; a clustered relay only once
//  it has joined (its table is in sync).
bool evr_relay_ready(evr_relay_t *self)
{
    return !self->cluster || evr_cluster_ready(self->cluster);
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

//  Everything `evrelayctl stats` shows.
json_t *evr_relay_stats(evr_relay_t *self)
{
    json_t *root = json_object();
    json_object_set_new(
        root, "uptime_s",
        json_integer((evr_relay_now_ms() - self->start_ms) / 1000));
    json_object_set_new(root, "ingest", evr_stats_ingest_json(&self->in));
    json_object_set_new(root, "control", evr_stats_control_json(&self->ct));
    json_t *table = json_object();
    json_object_set_new(table, "subscriptions",
                        json_integer((json_int_t)evr_table_size(self->table)));
    json_object_set_new(
        table, "events",
        json_integer((json_int_t)evr_table_event_count(self->table)));
    json_object_set_new(table, "producers",
                        json_integer((json_int_t)zhashx_size(self->producers)));
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
    return root;
}

/*  evr_target.c - the generic part of a target: references, the queue of
    deliveries, counters, latency, and the link to its transport.

    The transport-specific I/O lives in evr_tr_*.c behind
    evr_transport_ops_t (evr_transport.h).
*/
#include "evr_transport.h"
#include "evr_event.h"
#include "evr_payload.h"

#include <czmq.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _evr_target_t {
    int refs; //  atomic
    evr_sockspec_t *spec;
    const evr_transport_ops_t *ops;
    const evr_target_opts_t *opts;
    void *state; //  transport-private
    evr_format_t format;
    unsigned formats; //  bitmask, children included
    int worker;
    evr_reactor_t *reactor;
    uint64_t mark;   //  worker's work-list round
    bool active;     //  on the worker's active list
    int retired;     //  atomic: no subscription uses it any more
    int reopen_want; //  atomic: flatstore rotation requests
    //  The queue, a ring of deliveries owned by the worker.
    evr_delivery_t *ring;
    size_t ring_cap; //  power of two
    size_t head, count;
    //  virtual: children, owned (one reference each)
    evr_target_t **children;
    size_t nchildren;
    //  Counters (atomics).
    uint64_t delivered, failed, dropped, queued;
    uint64_t latency_count[EVR_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us;
};

static int s_global_reopen; //  atomic generation for SIGHUP

const uint64_t evr_latency_bounds_us[EVR_LATENCY_BUCKETS] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

//  Atomic helpers, relaxed: counters need no ordering.
#define S_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define S_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_RELAXED)
#define S_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)

//  --- messages -------------------------------------------------------------

//  Allocate a message holding a copy of len bytes, the event name and the
//  event id.
evr_msg_t *evr_msg_new(const void *data, size_t len, const char *event,
                       const char *id, int refs)
{
    size_t elen = event ? strlen(event) : 0;
    size_t ilen = id ? strlen(id) : 0;
    evr_msg_t *msg = malloc(sizeof(evr_msg_t) + len + elen + ilen + 2);
    if (!msg)
        return NULL;
    msg->refs = refs;
    msg->len = (uint32_t)len;
    msg->raised_us = 0;
    memset(msg->parts, 0, sizeof msg->parts);
    memcpy(msg->data, data, len);
    char *name = msg->data + len;
    if (elen)
        memcpy(name, event, elen);
    name[elen] = 0;
    msg->event = name;
    char *text = name + elen + 1;
    if (ilen)
        memcpy(text, id, ilen);
    text[ilen] = 0;
    msg->id = text;
    return msg;
}

//  Allocate a bundle taking one reference to each non-NULL part.
evr_msg_t *evr_msg_bundle(evr_msg_t *parts[EVR_FORMAT_COUNT], int refs)
{
    const char *event = NULL, *id = NULL;
    int64_t raised_us = 0;
    for (int f = 0; f < EVR_FORMAT_COUNT; f++)
        if (parts[f]) {
            event = parts[f]->event;
            id = parts[f]->id;
            raised_us = parts[f]->raised_us;
        }
    evr_msg_t *msg = evr_msg_new("", 0, event, id, refs);
    if (!msg)
        return NULL;
    msg->raised_us = raised_us;
    for (int f = 0; f < EVR_FORMAT_COUNT; f++)
        if ((msg->parts[f] = parts[f]))
            evr_msg_ref(parts[f]);
    return msg;
}

//  Take one more reference.
void evr_msg_ref(evr_msg_t *msg)
{
    __atomic_add_fetch(&msg->refs, 1, __ATOMIC_RELAXED);
}

//  Drop one reference; frees the message at zero.
void evr_msg_unref(evr_msg_t *msg)
{
    if (!msg || __atomic_sub_fetch(&msg->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int f = 0; f < EVR_FORMAT_COUNT; f++)
        evr_msg_unref(msg->parts[f]);
    free(msg);
}

//  --- construction ---------------------------------------------------------

//  The transport functions for a parsed socket.
static const evr_transport_ops_t *s_ops_for(evr_transport_t transport)
{
    switch (transport) {
        case EVR_TRANSPORT_UDP:
        case EVR_TRANSPORT_UNIX:
            return &evr_tr_datagram;
        case EVR_TRANSPORT_FLATSTORE:
            return &evr_tr_flatstore;
        case EVR_TRANSPORT_VIRTUAL:
            return &evr_tr_virtual;
        case EVR_TRANSPORT_TCP:
            return &evr_tr_tcp;
        case EVR_TRANSPORT_RABBITMQ:
            return &evr_tr_rabbitmq;
        case EVR_TRANSPORT_ZMQ:
            return &evr_tr_zmq;
        case EVR_TRANSPORT_HTTP:
            return &evr_tr_http;
    }
    return NULL;
}

//  Create a target for spec and prepare its I/O.
evr_target_t *evr_target_new(const evr_sockspec_t *spec,
                             const evr_target_opts_t *opts, int worker,
                             char *err, size_t errlen)
{
    evr_target_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->refs = 1;
    self->worker = worker;
    self->opts = opts;
    self->spec = evr_sockspec_dup(spec);
    evr_transport_t transport = evr_sockspec_transport(spec);
    self->ops = s_ops_for(transport);
    switch (transport) {
        case EVR_TRANSPORT_UDP:
        case EVR_TRANSPORT_UNIX:
            self->format =
                opts->datagram_legacy ? EVR_FORMAT_LEGACY : EVR_FORMAT_JSONRPC;
            break;
        case EVR_TRANSPORT_FLATSTORE:
            self->format = EVR_FORMAT_FLATSTORE;
            break;
        default:
            self->format = EVR_FORMAT_JSONRPC;
            break;
    }
    self->formats = 1u << self->format;
    if (!self->spec || !self->ops) {
        snprintf(err, errlen, "out of memory");
        evr_target_unref(&self);
        return NULL;
    }
    if (self->ops->open(self, err, errlen)) {
        evr_target_unref(&self);
        return NULL;
    }
    return self;
}

//  virtual: create the children.
int evr_target_make_children(evr_target_t *self, char *err, size_t errlen)
{
    size_t n = evr_sockspec_child_count(self->spec);
    self->children = calloc(n ? n : 1, sizeof *self->children);
    if (!self->children)
        return -1;
    self->formats = 0;
    for (size_t i = 0; i < n; i++) {
        char why[512];
        const evr_sockspec_t *child = evr_sockspec_child(self->spec, i);
        self->children[i] =
            evr_target_new(child, self->opts, self->worker, why, sizeof why);
        if (!self->children[i]) {
            snprintf(err, errlen, "virtual: child %zu '%s': %s", i + 1,
                     evr_sockspec_canonical(child), why);
            return -1;
        }
        self->nchildren++;
        self->formats |= self->children[i]->formats;
    }
    return 0;
}

//  Take a reference.
void evr_target_ref(evr_target_t *self)
{
    __atomic_add_fetch(&self->refs, 1, __ATOMIC_RELAXED);
}

//  Drop a reference and NULL the pointer; closes and frees at zero.
void evr_target_unref(evr_target_t **self_p)
{
    evr_target_t *self = *self_p;
    *self_p = NULL;
    if (!self || __atomic_sub_fetch(&self->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    while (self->count) {
        evr_delivery_t d;
        evr_target_take(self, &d);
        evr_delivery_forget(&d);
        evr_target_unref(&d.parent);
    }
    free(self->ring);
    if (self->ops && self->ops->close)
        self->ops->close(self);
    for (size_t i = 0; i < self->nchildren; i++)
        evr_target_unref(&self->children[i]);
    free(self->children);
    evr_sockspec_destroy(&self->spec);
    free(self);
}

//  --- accessors ------------------------------------------------------------

//  The canonical socket string.
const char *evr_target_socket(const evr_target_t *self)
{
    return evr_sockspec_canonical(self->spec);
}

//  The transport name.
const char *evr_target_transport(const evr_target_t *self)
{
    return evr_sockspec_transport_name(self->spec);
}

//  flatstore: the file path; NULL for others.
const char *evr_target_path(const evr_target_t *self)
{
    return evr_sockspec_transport(self->spec) == EVR_TRANSPORT_FLATSTORE
               ? evr_sockspec_path(self->spec)
               : NULL;
}

//  The payload formats this target (and its children) consume.
unsigned evr_target_formats(const evr_target_t *self)
{
    return self->formats;
}

//  The worker that owns the target's I/O.
int evr_target_worker(const evr_target_t *self)
{
    return self->worker;
}

//  virtual: the number of children.
size_t evr_target_child_count(const evr_target_t *self)
{
    return self->nchildren;
}

//  virtual: child i.
const evr_target_t *evr_target_child(const evr_target_t *self, size_t i)
{
    return i < self->nchildren ? self->children[i] : NULL;
}

//  virtual: child i, for the transport.
evr_target_t *evr_target_child_mut(evr_target_t *self, size_t i)
{
    return i < self->nchildren ? self->children[i] : NULL;
}

//  The target's parsed socket.
const evr_sockspec_t *evr_target_spec(const evr_target_t *self)
{
    return self->spec;
}

//  The target's options.
const evr_target_opts_t *evr_target_opts(const evr_target_t *self)
{
    return self->opts;
}

//  The transport's private state.
void *evr_target_state(const evr_target_t *self)
{
    return self->state;
}

//  Set the transport's private state.
void evr_target_set_state(evr_target_t *self, void *state)
{
    self->state = state;
}

//  The transport functions of a target.
const evr_transport_ops_t *evr_target_ops(const evr_target_t *self)
{
    return self->ops;
}

//  The reactor the target was woken on.
evr_reactor_t *evr_target_reactor(const evr_target_t *self)
{
    return self->reactor;
}

//  --- core side ------------------------------------------------------------

//  Core thread: account for one message about to be queued.
int evr_target_admit(evr_target_t *self)
{
    if (S_GET(&self->queued) >= self->opts->queue_limit) {
        S_ADD(&self->dropped, 1);
        return -1;
    }
    S_ADD(&self->queued, 1);
    return 0;
}

//  --- name resolution -------------------------------------------------------

//  Resolve the spec's host and port once, as OpenSIPS does at subscribe
//  time.
int evr_target_resolve(const evr_sockspec_t *spec, int socktype,
                       struct sockaddr_storage *addr, socklen_t *addrlen,
                       char *err, size_t errlen)
{
    const char *host = evr_sockspec_host(spec);
    int port = evr_sockspec_port(spec);
    if (!host || !*host || port <= 0 || port > 65535) {
        snprintf(err, errlen, "host and port required");
        return -1;
    }
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

//  --- the queue ------------------------------------------------------------

//  Append a delivery to the ring. Returns 0 or -1.
static int s_ring_push(evr_target_t *self, const evr_delivery_t *d)
{
    if (self->count == self->ring_cap) {
        size_t cap = self->ring_cap ? self->ring_cap * 2 : 64;
        evr_delivery_t *ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < self->count; i++)
            ring[i] = self->ring[(self->head + i) & (self->ring_cap - 1)];
        free(self->ring);
        self->ring = ring;
        self->ring_cap = cap;
        self->head = 0;
    }
    self->ring[(self->head + self->count) & (self->ring_cap - 1)] = *d;
    self->count++;
    return 0;
}

//  Number of deliveries waiting in the queue.
size_t evr_target_queued(const evr_target_t *self)
{
    return self->count;
}

//  The i-th waiting delivery.
evr_delivery_t *evr_target_peek(evr_target_t *self, size_t i)
{
    if (i >= self->count)
        return NULL;
    return &self->ring[(self->head + i) & (self->ring_cap - 1)];
}

//  Take the oldest waiting delivery off the queue.
int evr_target_take(evr_target_t *self, evr_delivery_t *out)
{
    if (!self->count)
        return -1;
    *out = self->ring[self->head];
    self->head = (self->head + 1) & (self->ring_cap - 1);
    self->count--;
    return 0;
}

//  The payload for an evid: target: msg with the event id added as the
//  first param (a new message; the reference to msg is dropped), or msg
//  itself when the target did not ask for it, the message is a bundle
//  (virtual parents pass ids on to their children), or the rewrite
//  failed (out of memory).
static evr_msg_t *s_with_id(evr_target_t *self, evr_msg_t *msg)
{
    if (!evr_sockspec_event_id(self->spec) || msg->len == 0)
        return msg;
    evr_buf_t buf = {0};
    int rc;
    if (self->format == EVR_FORMAT_JSONRPC)
        rc = evr_payload_jsonrpc_add_id(&buf, msg->data, msg->len, msg->id);
    else if (self->format == EVR_FORMAT_LEGACY)
        rc = evr_payload_legacy_add_id(&buf, msg->data, msg->len, msg->id);
    else
        rc = evr_payload_flatstore_add_id(
            &buf, msg->data, msg->len, msg->event, self->opts->flat_delimiter,
            self->opts->flat_suppress_name, msg->id);
    evr_msg_t *out =
        rc == 0 ? evr_msg_new(buf.data, buf.len, msg->event, msg->id, 1) : NULL;
    evr_buf_free(&buf);
    if (!out)
        return msg;
    out->raised_us = msg->raised_us;
    evr_msg_unref(msg);
    return out;
}

//  Worker: queue a message admitted by the core.
void evr_target_push(evr_target_t *self, evr_reactor_t *reactor, evr_msg_t *msg,
                     evr_track_t *track, uint32_t event)
{
    self->reactor = reactor;
    evr_delivery_t d = {.msg = msg, .track = track, .event = event};
    if (msg->len == 0 && msg->parts[0] == NULL && msg->parts[1] == NULL &&
        msg->parts[2] == NULL) {
        //  cannot happen: the core never queues an empty message
        evr_target_dequeued(self);
        evr_target_count(self, 0, EVR_OUTCOME_DROPPED);
        evr_delivery_forget(&d);
        return;
    }
    d.msg = s_with_id(self, msg);
    if (s_ring_push(self, &d)) {
        evr_target_dequeued(self);
        evr_target_count(self, 0, EVR_OUTCOME_DROPPED);
        evr_delivery_forget(&d);
        return;
    }
    evr_reactor_wake(reactor, self);
}

//  Queue a delivery for a virtual child and wake the worker for it.
int evr_target_enqueue(evr_target_t *self, evr_delivery_t *d)
{
    if (d->parent)
        self->reactor = evr_target_reactor(d->parent);
    if (S_GET(&self->queued) >= self->opts->queue_limit)
        return -1;
    d->msg = s_with_id(self, d->msg);
    if (s_ring_push(self, d))
        return -1;
    S_ADD(&self->queued, 1);
    if (self->reactor)
        evr_reactor_wake(self->reactor, self);
    return 0;
}

//  --- outcomes -------------------------------------------------------------

//  The histogram bucket of a latency.
static size_t s_bucket(uint64_t us)
{
    size_t b = 0;
    while (b < EVR_LATENCY_BUCKETS && us > evr_latency_bounds_us[b])
        b++;
    return b;
}

//  One message fewer queued on a target.
void evr_target_dequeued(evr_target_t *self)
{
    S_SUB(&self->queued, 1);
}

//  Count an outcome on a target.
void evr_target_count(evr_target_t *self, int64_t raised_us,
                      evr_outcome_t outcome)
{
    if (outcome == EVR_OUTCOME_FAILED) {
        S_ADD(&self->failed, 1);
        return;
    }
    if (outcome == EVR_OUTCOME_DROPPED) {
        S_ADD(&self->dropped, 1);
        return;
    }
    S_ADD(&self->delivered, 1);
    if (raised_us > 0) {
        int64_t now_us = evr_wall_us();
        uint64_t us = now_us > raised_us ? (uint64_t)(now_us - raised_us) : 0;
        S_ADD(&self->latency_count[s_bucket(us)], 1);
        S_ADD(&self->latency_sum_us, us);
    }
}

//  Let a delivery's tracker hold go (no-op without one).
void evr_delivery_settle(evr_delivery_t *d, bool ok)
{
    if (d->track) {
        evr_track_done(d->track, d->event, ok);
        d->track = NULL;
    }
}

//  Release a delivery that will never get an outcome.
void evr_delivery_forget(evr_delivery_t *d)
{
    evr_msg_unref(d->msg);
    evr_msg_unref(d->bundle);
    d->msg = d->bundle = NULL;
    evr_delivery_settle(d, false);
}

//  Report the outcome of a delivery.
void evr_target_complete(evr_target_t *self, evr_delivery_t *d, bool ok)
{
    evr_target_dequeued(self);
    evr_target_count(self, d->msg ? d->msg->raised_us : 0,
                     ok ? EVR_OUTCOME_DELIVERED : EVR_OUTCOME_FAILED);
    if (d->parent) {
        evr_tr_virtual_child_done(d->parent, self, d, ok);
        return;
    }
    evr_msg_unref(d->msg);
    evr_msg_unref(d->bundle);
    evr_delivery_settle(d, ok);
}

//  Complete the n oldest waiting deliveries with the same outcome.
void evr_target_complete_front(evr_target_t *self, size_t n, bool ok)
{
    for (size_t i = 0; i < n; i++) {
        evr_delivery_t d;
        if (evr_target_take(self, &d))
            return;
        evr_target_complete(self, &d, ok);
    }
}

//  --- worker side ----------------------------------------------------------

//  Worker: mark the target as seen in pass `round`.
bool evr_target_mark(evr_target_t *self, uint64_t round)
{
    if (self->mark == round)
        return false;
    self->mark = round;
    return true;
}

//  Worker: set whether the target is on the active list; returns the old
//  value.
bool evr_target_set_active(evr_target_t *self, bool active)
{
    bool old = self->active;
    self->active = active;
    return old;
}

//  Worker: whether the target needs the reactor.
bool evr_target_needs_reactor(evr_target_t *self)
{
    return self->count > 0 || (self->ops->busy && self->ops->busy(self));
}

//  Worker: fail everything queued and in flight.
void evr_target_abort(evr_target_t *self)
{
    if (self->ops->abort)
        self->ops->abort(self);
    while (self->count) {
        evr_delivery_t d;
        evr_target_take(self, &d);
        evr_target_dequeued(self);
        evr_target_count(self, 0, EVR_OUTCOME_DROPPED);
        if (d.parent)
            evr_tr_virtual_child_done(d.parent, self, &d, false);
        else
            evr_delivery_forget(&d);
    }
}

//  Core thread: the last subscription of this target is gone.
void evr_target_retire(evr_target_t *self)
{
    __atomic_store_n(&self->retired, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < self->nchildren; i++)
        evr_target_retire(self->children[i]);
}

//  Whether the core retired the target.
bool evr_target_retired(const evr_target_t *self)
{
    return __atomic_load_n(&self->retired, __ATOMIC_ACQUIRE) != 0;
}

//  --- flatstore rotation ---------------------------------------------------

//  Ask flatstore targets (this one or its children) writing path to reopen.
bool evr_target_request_reopen(evr_target_t *self, const char *path)
{
    bool hit = false;
    const char *mine = evr_target_path(self);
    if (mine && (!path || !strcmp(mine, path))) {
        S_ADD(&self->reopen_want, 1);
        hit = true;
    }
    for (size_t i = 0; i < self->nchildren; i++)
        hit |= evr_target_request_reopen(self->children[i], path);
    return hit;
}

//  Reopen every flatstore file before its next write (SIGHUP).
void evr_target_reopen_all(void)
{
    S_ADD(&s_global_reopen, 1);
}

//  The reopen generation wanted for this target.
int evr_target_reopen_generation(const evr_target_t *self)
{
    return S_GET(&self->reopen_want) + S_GET(&s_global_reopen);
}

//  Snapshot the counters.
void evr_target_stats(const evr_target_t *self, evr_target_stats_t *stats)
{
    stats->delivered = S_GET(&self->delivered);
    stats->failed = S_GET(&self->failed);
    stats->dropped = S_GET(&self->dropped);
    stats->queued = S_GET(&self->queued);
    for (size_t b = 0; b <= EVR_LATENCY_BUCKETS; b++)
        stats->latency_count[b] = S_GET(&self->latency_count[b]);
    stats->latency_sum_us = S_GET(&self->latency_sum_us);
}

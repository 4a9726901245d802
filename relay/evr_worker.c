/*  evr_worker.c - a delivery worker thread: a reactor over its targets.

    Loop: poll the inproc job socket and every active target's items (fds
    waiting for POLLOUT, connections, ZeroMQ sockets) with the earliest
    target timer as timeout; run on_poll / on_timer; queue each job's
    message on its target; flush every target touched ("dirty"), including
    virtual children woken while flushing; keep targets that still need
    the reactor on the active list (one reference each).
*/
#include "evr_worker.h"
#include "evr_transport.h"

#include <czmq.h>
#include <pthread.h>

#define ITEMS_PER_TARGET 8

typedef struct {
    size_t n;
    evr_job_t *jobs;
} s_batch_t;

//  A growable list of targets, one reference each.
typedef struct {
    evr_target_t **items;
    size_t n, cap;
} s_list_t;

struct _evr_reactor_t {
    s_list_t dirty;
    s_list_t active;
    uint64_t round;
    bool stopping;
};

struct _evr_worker_t {
    int index;
    void *push; //  core side of the PAIR
    void *pull; //  worker side of the PAIR
    pthread_t thread;
    bool started;
    evr_reactor_t reactor;
};

//  Append t to a list. Returns 0 or -1.
static int s_list_add(s_list_t *list, evr_target_t *t)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        evr_target_t **grown = realloc(list->items, cap * sizeof *grown);
        if (!grown)
            return -1;
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->n++] = t;
    return 0;
}

//  Put target on the reactor's work list (once per round).
void evr_reactor_wake(evr_reactor_t *reactor, evr_target_t *target)
{
    if (!evr_target_mark(target, reactor->round))
        return;
    evr_target_ref(target);
    if (s_list_add(&reactor->dirty, target)) {
        evr_target_t *t = target;
        evr_target_unref(&t);
    }
}

//  True while the worker is shutting down.
bool evr_reactor_stopping(const evr_reactor_t *reactor)
{
    return reactor->stopping;
}

//  Take one batch of jobs: queue every message on its target.
static void s_take_batch(evr_reactor_t *r, s_batch_t *batch)
{
    for (size_t i = 0; i < batch->n; i++) {
        evr_target_push(batch->jobs[i].target, r, batch->jobs[i].msg,
                        batch->jobs[i].track, batch->jobs[i].event);
        evr_target_unref(&batch->jobs[i].target);
    }
    free(batch->jobs);
    free(batch);
}

//  Flush every dirty target (the list may grow meanwhile), then move those
//  that still need the reactor to the active list.
static void s_flush_dirty(evr_reactor_t *r)
{
    int64_t now = zclock_usecs();
    for (size_t i = 0; i < r->dirty.n; i++) {
        evr_target_t *t = r->dirty.items[i];
        //  Unmark first: a target fed after its flush in this pass (a
        //  virtual child its parent routes to later in the list) must be
        //  listed, and flushed, again; nothing else would wake it.
        evr_target_mark(t, 0);
        if (evr_target_queued(t))
            evr_target_ops(t)->flush(t, now);
    }
    r->round++;
    for (size_t i = 0; i < r->dirty.n; i++) {
        evr_target_t *t = r->dirty.items[i];
        if (evr_target_needs_reactor(t) && !evr_target_set_active(t, true) &&
            s_list_add(&r->active, t) == 0)
            continue; //  the dirty reference moves to the active list
        evr_target_unref(&t);
    }
    r->dirty.n = 0;
}

//  Drop active targets that no longer need the reactor; abort retired
//  (unsubscribed) ones: what they still hold is dropped and counted.
static void s_prune(evr_reactor_t *r)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->active.n; i++) {
        evr_target_t *t = r->active.items[i];
        if (evr_target_retired(t))
            evr_target_abort(t);
        if (evr_target_needs_reactor(t)) {
            r->active.items[keep++] = t;
            continue;
        }
        evr_target_set_active(t, false);
        evr_target_unref(&t);
    }
    r->active.n = keep;
}

//  Drain the job socket without blocking. Returns -1 on the stop message.
static int s_drain_jobs(evr_worker_t *self)
{
    while (true) {
        s_batch_t *batch;
        int rc = zmq_recv(self->pull, &batch, sizeof batch, ZMQ_DONTWAIT);
        if (rc != sizeof batch)
            return 0;
        if (!batch)
            return -1;
        s_take_batch(&self->reactor, batch);
    }
}

//  Abort and release everything at shutdown.
static void s_shutdown(evr_reactor_t *r)
{
    r->stopping = true;
    for (size_t i = 0; i < r->active.n; i++)
        evr_target_abort(r->active.items[i]);
    for (size_t i = 0; i < r->dirty.n; i++)
        evr_target_abort(r->dirty.items[i]);
    for (size_t i = 0; i < r->active.n; i++)
        evr_target_unref(&r->active.items[i]);
    for (size_t i = 0; i < r->dirty.n; i++)
        evr_target_unref(&r->dirty.items[i]);
    free(r->active.items);
    free(r->dirty.items);
    memset(r, 0, sizeof *r);
}

//  The worker thread.
static void *s_run(void *arg)
{
    evr_worker_t *self = arg;
    evr_reactor_t *r = &self->reactor;
    zmq_pollitem_t *items = NULL;
    size_t *spans = NULL; //  per active target: its first item and count
    size_t cap = 0;
    bool stop = false;
    while (!stop) {
        size_t need = 1 + r->active.n * ITEMS_PER_TARGET;
        if (need > cap) {
            zmq_pollitem_t *gi = realloc(items, need * 2 * sizeof *gi);
            size_t *gs = gi ? realloc(spans, need * 2 * sizeof *gs) : NULL;
            if (gi)
                items = gi;
            if (gs)
                spans = gs;
            if (!gi || !gs) {
                zclock_sleep(10);
                continue;
            }
            cap = need * 2;
        }
        items[0] = (zmq_pollitem_t){self->pull, 0, ZMQ_POLLIN, 0};
        size_t n = 1;
        int64_t next = INT64_MAX;
        for (size_t i = 0; i < r->active.n; i++) {
            evr_target_t *t = r->active.items[i];
            const evr_transport_ops_t *ops = evr_target_ops(t);
            int k = ops->poll_items
                        ? ops->poll_items(t, items + n, ITEMS_PER_TARGET)
                        : 0;
            spans[2 * i] = n;
            spans[2 * i + 1] = (size_t)k;
            n += (size_t)k;
            if (ops->next_timer) {
                int64_t when = ops->next_timer(t);
                if (when < next)
                    next = when;
            }
        }
        long timeout = -1;
        if (next != INT64_MAX) {
            int64_t wait_us = next - zclock_usecs();
            timeout = wait_us <= 0 ? 0 : (long)((wait_us + 999) / 1000);
        }
        if (zmq_poll(items, (int)n, timeout) < 0 && zmq_errno() == ETERM)
            break;
        int64_t now = zclock_usecs();
        size_t nactive = r->active.n; //  on_poll may not grow it
        for (size_t i = 0; i < nactive; i++) {
            evr_target_t *t = r->active.items[i];
            const evr_transport_ops_t *ops = evr_target_ops(t);
            size_t first = spans[2 * i], k = spans[2 * i + 1];
            bool ready = false;
            for (size_t j = 0; j < k; j++)
                ready |= items[first + j].revents != 0;
            if (ready && ops->on_poll)
                ops->on_poll(t, items + first, (int)k, now);
            if (ops->next_timer && ops->on_timer && ops->next_timer(t) <= now)
                ops->on_timer(t, now);
            if (evr_target_queued(t))
                evr_reactor_wake(r, t);
        }
        if (items[0].revents & ZMQ_POLLIN)
            stop = s_drain_jobs(self) == -1;
        s_flush_dirty(r);
        s_prune(r);
    }
    s_shutdown(r);
    free(items);
    free(spans);
    return NULL;
}

//  Start worker number index on the ZeroMQ context ctx.
evr_worker_t *evr_worker_new(void *ctx, int index)
{
    evr_worker_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->index = index;
    self->reactor.round = 1;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://evr-worker-%d", index);
    self->push = zmq_socket(ctx, ZMQ_PAIR);
    self->pull = zmq_socket(ctx, ZMQ_PAIR);
    int hwm = 0; //  unbounded: the per-target admit() bound is the limit
    if (self->push && self->pull) {
        zmq_setsockopt(self->push, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(self->pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    }
    if (!self->push || !self->pull || zmq_bind(self->pull, endpoint) ||
        zmq_connect(self->push, endpoint) ||
        pthread_create(&self->thread, NULL, s_run, self)) {
        evr_worker_destroy(&self);
        return NULL;
    }
    self->started = true;
    return self;
}

//  Stop the thread, free, NULL the pointer.
void evr_worker_destroy(evr_worker_t **self_p)
{
    evr_worker_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->started) {
        s_batch_t *stop = NULL;
        zmq_send(self->push, &stop, sizeof stop, 0);
        pthread_join(self->thread, NULL);
    }
    int linger = 0;
    if (self->push) {
        zmq_setsockopt(self->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(self->push);
    }
    if (self->pull) {
        zmq_setsockopt(self->pull, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(self->pull);
    }
    free(self);
}

//  Core thread: hand over n jobs.
int evr_worker_submit(evr_worker_t *self, evr_job_t *jobs, size_t n)
{
    s_batch_t *batch = malloc(sizeof *batch);
    if (!batch)
        return -1;
    batch->n = n;
    batch->jobs = jobs;
    if (zmq_send(self->push, &batch, sizeof batch, 0) != sizeof batch) {
        free(batch);
        return -1;
    }
    return 0;
}

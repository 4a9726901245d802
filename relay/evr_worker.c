/*  evr_worker.c - a delivery worker thread.

    Loop: wait on the inproc job socket and on POLLOUT of every target that
    would block; push each job's message onto its target's queue, then
    flush every target touched. A target that cannot take more stays on
    the waiting list (the worker holds a reference) until its fd is
    writable again.
*/
#include "evr_worker.h"

#include <czmq.h>
#include <pthread.h>

typedef struct {
    size_t n;
    evr_job_t *jobs;
} s_batch_t;

struct _evr_worker_t {
    int index;
    void *push; //  core side of the PAIR
    void *pull; //  worker side of the PAIR
    pthread_t thread;
    bool started;
    //  Worker-private state.
    evr_target_t **waiting; //  targets blocked on POLLOUT (one ref each)
    size_t nwaiting, waiting_cap;
    evr_target_t **dirty; //  targets touched in this round (one ref each)
    size_t ndirty, dirty_cap;
    uint64_t round;
};

//  Append t to a growable list. Returns 0 or -1.
static int s_list_add(evr_target_t ***list, size_t *n, size_t *cap,
                      evr_target_t *t)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        evr_target_t **grown = realloc(*list, ncap * sizeof *grown);
        if (!grown)
            return -1;
        *list = grown;
        *cap = ncap;
    }
    (*list)[(*n)++] = t;
    return 0;
}

//  Take one batch of jobs: queue every message on its target.
static void s_take_batch(evr_worker_t *self, s_batch_t *batch)
{
    for (size_t i = 0; i < batch->n; i++) {
        evr_target_t *t = batch->jobs[i].target;
        if (evr_target_push(t, batch->jobs[i].msg)) {
            evr_msg_unref(batch->jobs[i].msg);
        }
        if (evr_target_mark(t, self->round)) {
            //  the job's reference moves to the dirty list
            if (s_list_add(&self->dirty, &self->ndirty, &self->dirty_cap, t))
                evr_target_unref(&t);
        } else
            evr_target_unref(&t);
    }
    free(batch->jobs);
    free(batch);
}

//  Flush every dirty target; those that would block go to waiting.
static void s_flush_dirty(evr_worker_t *self)
{
    for (size_t i = 0; i < self->ndirty; i++) {
        evr_target_t *t = self->dirty[i];
        bool already_waiting = false;
        for (size_t w = 0; w < self->nwaiting; w++)
            if (self->waiting[w] == t)
                already_waiting = true;
        if (already_waiting) {
            //  it gets flushed when its fd is writable
            evr_target_unref(&t);
            continue;
        }
        if (evr_target_flush(t) == 1 &&
            s_list_add(&self->waiting, &self->nwaiting, &self->waiting_cap,
                       t) == 0)
            continue;
        evr_target_unref(&t);
    }
    self->ndirty = 0;
    self->round++;
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
        s_take_batch(self, batch);
    }
}

//  The worker thread.
static void *s_run(void *arg)
{
    evr_worker_t *self = arg;
    zmq_pollitem_t *items = NULL;
    size_t items_cap = 0;
    bool stop = false;
    while (!stop) {
        size_t n = 1 + self->nwaiting;
        if (n > items_cap) {
            zmq_pollitem_t *grown = realloc(items, n * 2 * sizeof *items);
            if (!grown) {
                zclock_sleep(10);
                continue;
            }
            items = grown;
            items_cap = n * 2;
        }
        items[0] = (zmq_pollitem_t){self->pull, 0, ZMQ_POLLIN, 0};
        for (size_t i = 0; i < self->nwaiting; i++)
            items[i + 1] = (zmq_pollitem_t){
                NULL, evr_target_fd(self->waiting[i]), ZMQ_POLLOUT, 0};
        if (zmq_poll(items, (int)n, -1) < 0) {
            if (zmq_errno() == ETERM)
                break;
            continue;
        }
        //  Writable targets first: they hold the oldest messages.
        size_t keep = 0;
        for (size_t i = 0; i < self->nwaiting; i++) {
            evr_target_t *t = self->waiting[i];
            if ((items[i + 1].revents & (ZMQ_POLLOUT | ZMQ_POLLERR)) &&
                evr_target_flush(t) != 1)
                evr_target_unref(&t);
            else
                self->waiting[keep++] = t;
        }
        self->nwaiting = keep;
        if (items[0].revents & ZMQ_POLLIN) {
            stop = s_drain_jobs(self) == -1;
            s_flush_dirty(self);
        }
    }
    for (size_t i = 0; i < self->nwaiting; i++) {
        evr_target_discard(self->waiting[i]);
        evr_target_unref(&self->waiting[i]);
    }
    self->nwaiting = 0;
    free(items);
    return NULL;
}

//  Start worker number index on the ZeroMQ context ctx.
evr_worker_t *evr_worker_new(void *ctx, int index)
{
    evr_worker_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->index = index;
    self->round = 1;
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
        //  jobs sent after the stop message cannot exist: the core stops
        //  submitting before it destroys workers
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
    free(self->waiting);
    free(self->dirty);
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

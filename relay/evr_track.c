/*  evr_track.c - delivery trackers for the DELIVERED ack point.

    See evr_track.h. A tracker is one allocation: the header and one byte
    of marks per event. Holds are a 64-bit atomic counter; the release
    that takes it to zero is acquire-release, so every mark a worker wrote
    before its done() is visible to whoever finishes the tracker. The
    queue is a singly linked list under a mutex with an eventfd that is
    non-zero exactly while the list is not empty (written on empty ->
    non-empty, read on non-empty -> empty, both under the mutex).
*/
#include "evr_track.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

//  Per-event marks.
#define S_EXPECTED 1 //  the event has at least one subscriber
#define S_OK 2       //  one of its deliveries succeeded

struct _evr_track_t {
    uint64_t holds;      //  atomic: deliveries (and the creator) holding it
    evr_trackq_t *queue; //  where it goes when the last hold is let go
    evr_track_t *next;   //  queue link
    void *data;          //  the owner's
    void (*free_fn)(void *data);
    uint32_t nevents;
    uint8_t marks[]; //  per event, S_EXPECTED | S_OK, atomic bytes
};

struct _evr_trackq_t {
    pthread_mutex_t lock;
    evr_track_t *head, *tail; //  finished trackers, oldest first
    int fd;                   //  eventfd: readable while head != NULL
    uint64_t live;            //  atomic: trackers created and not destroyed
};

//  --------------------------------------------------------------------------
//  Create an empty queue. NULL when out of memory or out of descriptors.

evr_trackq_t *evr_trackq_new(void)
{
    evr_trackq_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->fd < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the queue and the trackers still in it, and NULL the pointer.

void evr_trackq_destroy(evr_trackq_t **self_p)
{
    assert(self_p);
    evr_trackq_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    evr_track_t *t;
    while ((t = evr_trackq_pop(self)))
        evr_track_destroy(&t);
    close(self->fd);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

//  --------------------------------------------------------------------------
//  A descriptor that polls readable while finished trackers wait.

int evr_trackq_fd(const evr_trackq_t *self)
{
    return self->fd;
}

//  --------------------------------------------------------------------------
//  Append a finished tracker and make the descriptor readable if the list
//  was empty.

static void s_push(evr_trackq_t *self, evr_track_t *t)
{
    t->next = NULL;
    pthread_mutex_lock(&self->lock);
    if (self->tail)
        self->tail->next = t;
    else {
        self->head = t;
        uint64_t one = 1;
        ssize_t rc = write(self->fd, &one, sizeof one);
        (void)rc; //  cannot fail: the counter was 0
    }
    self->tail = t;
    pthread_mutex_unlock(&self->lock);
}

//  --------------------------------------------------------------------------
//  Take the oldest finished tracker, or NULL; clears the descriptor when
//  the list becomes empty.

evr_track_t *evr_trackq_pop(evr_trackq_t *self)
{
    pthread_mutex_lock(&self->lock);
    evr_track_t *t = self->head;
    if (t) {
        self->head = t->next;
        if (!self->head) {
            self->tail = NULL;
            uint64_t value;
            ssize_t rc = read(self->fd, &value, sizeof value);
            (void)rc; //  cannot fail: the counter was non-zero
        }
        t->next = NULL;
    }
    pthread_mutex_unlock(&self->lock);
    return t;
}

//  --------------------------------------------------------------------------
//  Trackers created and not destroyed yet.

uint64_t evr_trackq_live(const evr_trackq_t *self)
{
    return __atomic_load_n(&self->live, __ATOMIC_RELAXED);
}

//  --------------------------------------------------------------------------
//  Create a tracker for nevents events with the creator's hold.

evr_track_t *evr_track_new(evr_trackq_t *queue, uint32_t nevents)
{
    assert(queue);
    evr_track_t *self = calloc(1, sizeof *self + nevents);
    if (!self)
        return NULL;
    self->holds = 1;
    self->queue = queue;
    self->nevents = nevents;
    __atomic_add_fetch(&queue->live, 1, __ATOMIC_RELAXED);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a tracker and its data, and NULL the pointer.

void evr_track_destroy(evr_track_t **self_p)
{
    assert(self_p);
    evr_track_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->free_fn)
        self->free_fn(self->data);
    __atomic_sub_fetch(&self->queue->live, 1, __ATOMIC_RELAXED);
    free(self);
}

//  --------------------------------------------------------------------------
//  Attach the owner's data and its free function.

void evr_track_set_data(evr_track_t *self, void *data,
                        void (*free_fn)(void *data))
{
    self->data = data;
    self->free_fn = free_fn;
}

//  --------------------------------------------------------------------------
//  The owner's data.

void *evr_track_data(const evr_track_t *self)
{
    return self->data;
}

//  --------------------------------------------------------------------------
//  The number of events of the batch.

uint32_t evr_track_events(const evr_track_t *self)
{
    return self->nevents;
}

//  --------------------------------------------------------------------------
//  Mark an event as having at least one subscriber.

void evr_track_expect(evr_track_t *self, uint32_t event)
{
    assert(event < self->nevents);
    __atomic_or_fetch(&self->marks[event], S_EXPECTED, __ATOMIC_RELAXED);
}

//  --------------------------------------------------------------------------
//  Take n more holds.

void evr_track_hold(evr_track_t *self, uint64_t n)
{
    __atomic_add_fetch(&self->holds, n, __ATOMIC_RELAXED);
}

//  --------------------------------------------------------------------------
//  Let one hold go; returns true when it was the last.

static bool s_let_go(evr_track_t *self, uint32_t event, bool ok)
{
    if (ok && event < self->nevents)
        __atomic_or_fetch(&self->marks[event], S_OK, __ATOMIC_RELAXED);
    uint64_t left = __atomic_sub_fetch(&self->holds, 1, __ATOMIC_ACQ_REL);
    assert(left != UINT64_MAX);
    return left == 0;
}

//  --------------------------------------------------------------------------
//  A delivery of event reached its final outcome; the last hold queues the
//  tracker.

void evr_track_done(evr_track_t *self, uint32_t event, bool ok)
{
    if (s_let_go(self, event, ok))
        s_push(self->queue, self);
}

//  --------------------------------------------------------------------------
//  Let the creator's hold go; true when it was the last (not queued).

bool evr_track_release(evr_track_t *self)
{
    return s_let_go(self, EVR_TRACK_NO_EVENT, false);
}

//  --------------------------------------------------------------------------
//  Whether event had subscribers and none of its deliveries succeeded.

bool evr_track_failed(const evr_track_t *self, uint32_t event)
{
    assert(event < self->nevents);
    uint8_t marks = __atomic_load_n(&self->marks[event], __ATOMIC_RELAXED);
    return (marks & S_EXPECTED) && !(marks & S_OK);
}

/*  evr_client.c - libevrelay: raise events into an evrelay cluster.

    The caller's side and the network side meet in one bounded ring of
    events, guarded by a mutex:

    - evr_raise() validates the event, stamps it and pushes it on the ring.
      It never blocks: on a full ring the oldest queued event is dropped and
      counted. It pokes an eventfd only when the ring goes from empty to
      non-empty or reaches a full batch, so a busy producer makes about one
      syscall per batch, not per event.

    - A background thread owns the ZeroMQ DEALER, which is connected to
      every relay (ZMQ_IMMEDIATE, so only live relays get messages). It takes
      batches off the ring, numbers them (first_seq within producer id and
      epoch), packs an Evrelay__Publish and sends it. A batch that is not
      full waits up to linger_ms for more events. Every sent batch stays in
      the unacked window, packed, until a relay acks it (per batch, or
      cumulatively through acked_through); a batch unacked past its deadline
      is resent as is, with a doubling timeout. The window is bounded in
      events; while it is full nothing new is taken from the ring, so a dead
      cluster shows up as queue drops, never as a blocked caller.

    Sequence numbers are given when a batch leaves the ring, so events
    dropped from the ring leave no gap in what the relays see.

    Ack points (opts.ack_point, sent in every Publish): ACCEPTED (the
    default; the Publish carries no ack_point field, byte for byte as
    before) and DELIVERED work as above; with DELIVERED the relay answers a
    batch only once its deliveries are final, and lists the events no
    subscriber took in Ack.failed. NONE is fire-and-forget: there is no
    window; a batch is taken off the ring only while the DEALER can take
    it (a relay is connected and under its high-water mark), sent once and
    never kept; one that fails to go out anyway is dropped and counted.
    While no relay can take anything, events wait in the ring (the oldest
    dropped when it is full).

    Outcomes (evr_raise_cb): every event raised with a callback carries it
    through the ring into its batch; the thread calls it exactly once with
    ACKED, FAILED, REJECTED or DROPPED, never under the lock, and always
    before the event stops counting as queued or in flight (so a flush that
    returns has seen every callback). Callbacks of events dropped from a
    full ring by evr_raise are queued for the thread too. When the thread
    ends, whatever is left is reported DROPPED.

    Counters: raised = acked + failed + rejected-by-relay + dropped +
    queued + in_flight at all times with ACCEPTED and DELIVERED; with NONE,
    events sent count in sent instead of acked (events refused by
    evr_raise itself are counted in rejected only).
*/

#include "evrelay.h"
#include "evr_ack.h"
#include "evr_curve.h"
#include "evr_defaults.h"
#include "evrelay.pb-c.h"

#include <zmq.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

//  Producer ids are 16 random bytes: unique without coordination.
#define S_PRODUCER_ID_BYTES 16

//  Heartbeats on the DEALER (notes C3): a dead relay's pipe goes away after
//  about 3 s, so resends stop being routed to it.
#define S_HEARTBEAT_IVL_MS 1000
#define S_HEARTBEAT_TIMEOUT_MS 3000
#define S_HEARTBEAT_TTL_MS 5000

//  Reconnect back-off cap: a restarted relay is found again within 1 s.
#define S_RECONNECT_IVL_MAX_MS 1000

//  A send that failed with EAGAIN (no relay connected yet) is retried this
//  soon, so a relay that comes up is used quickly (a cheap poll while
//  disconnected).
#define S_EAGAIN_RETRY_US 10000

//  Bytes a Publish needs besides its events (version, 16-byte producer id,
//  epoch, first_seq, with their tags and lengths), rounded up.
#define S_PUBLISH_OVERHEAD 64

//  NONE: the DEALER's high-water mark holds at least this many batches.
#define S_NONE_HWM_MIN 64

//  NONE: at destroy, batches ZeroMQ still holds for a connected relay
//  (already counted sent) get this long to leave; with an ack point the
//  window has them and nothing lingers.
#define S_NONE_LINGER_MS 1000

//  Params held inside the event before a separate array is needed.
#define S_INLINE_PARAMS 8

//  Outcome callbacks of dropped events waiting for the thread, initially.
#define S_DROPPED_CBS_MIN 64

//  One outcome callback (evr_raise_cb); fn NULL = none.
typedef struct {
    evr_done_fn *fn;
    void *arg;
} s_done_t;

struct _evr_event_t {
    Evrelay__Event pb; //  the message; pb.name points at name[]
    Evrelay__Param *inline_params[S_INLINE_PARAMS];
    size_t params_cap;  //  slots in pb.params
    bool broken;        //  an add failed: evr_raise refuses it
    size_t packed_size; //  set by evr_raise
    s_done_t done;      //  evr_raise_cb's callback, or none
    char name[];        //  copy of the event name
};

//  One sent (or to be sent) batch in the unacked window.
typedef struct {
    uint64_t first_seq;  //  seq of the batch's first event
    uint32_t count;      //  events in the batch
    bool sent;           //  went out at least once
    bool done;           //  acked or rejected: only a hole in the window now
    int64_t deadline_us; //  next (re)send, monotonic clock
    int64_t ivl_us;      //  current resend interval
    uint8_t *data;       //  the packed Publish, resent byte for byte
    size_t size;
    s_done_t *dones; //  count callbacks, or NULL when no event has one
} s_batch_t;

//  The unacked window: a growable deque ordered by first_seq.
typedef struct {
    s_batch_t *slots;
    size_t cap; //  power of two
    size_t head;
    size_t count;
} s_window_t;

struct _evr_client_t {
    //  Settings, fixed at creation
    size_t queue_max;  //  ring capacity, events
    size_t window_max; //  unacked bound, events
    size_t batch_max;  //  events per Publish
    int64_t linger_us;
    int64_t resend_us;
    evr_ack_point_t ack_point;
    uint8_t producer_id[S_PRODUCER_ID_BYTES];
    uint64_t epoch; //  wall clock at creation, microseconds

    //  Shared between callers and the thread, under lock
    pthread_mutex_t lock;
    pthread_cond_t idle; //  signalled when ring and window are empty
    evr_event_t **ring;
    size_t ring_head;
    size_t ring_count;
    bool stopping;
    evr_client_stats_t stats; //  queued/in_flight are filled on read
    size_t in_flight;         //  events taken off the ring and not yet finished
    s_done_t *dropped_cbs;    //  callbacks of events dropped from the ring
    size_t ndropped_cbs, capdropped_cbs;

    //  Owned by the background thread once it runs
    void *ctx;
    void *dealer;
    int wakefd; //  eventfd: raise -> thread
    pthread_t thread;
    bool thread_started;
    s_window_t window;
    uint64_t next_seq;     //  seq of the next event taken off the ring
    int64_t pending_since; //  when the thread saw the ring non-empty; 0 = no
    int64_t resend_at;     //  no window deadline is earlier than this
    evr_event_t **taken;   //  batch_max events being packed
    Evrelay__Event **pb_events; //  their messages, for the Publish
    uint8_t *outcomes; //  batch_max evr_ack_out_t, while an ack is applied
};

//  --------------------------------------------------------------------------
//  Monotonic clock in microseconds, for timers.

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --------------------------------------------------------------------------
//  Wall clock in microseconds since the epoch, for raised_us and the epoch.

static uint64_t s_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

//  --------------------------------------------------------------------------
//  Bytes of a protobuf varint holding value.

static size_t s_varint_size(uint64_t value)
{
    size_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

//  --------------------------------------------------------------------------
//  True when name is a valid event name: 1..EVR_MAX_EVENT_NAME printable
//  ASCII characters without spaces.

static bool s_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t len = 0;
    for (const char *c = name; *c; c++, len++) {
        if (len >= EVR_MAX_EVENT_NAME || *c <= ' ' || *c > '~')
            return false;
    }
    return len > 0;
}

//  --------------------------------------------------------------------------
//  Create an event named name. NULL on a bad name or out of memory.

evr_event_t *evr_event_new(const char *name)
{
    if (!s_name_valid(name))
        return NULL;
    size_t name_size = strlen(name) + 1;
    evr_event_t *self = malloc(sizeof(evr_event_t) + name_size);
    if (!self)
        return NULL;
    evrelay__event__init(&self->pb);
    memcpy(self->name, name, name_size);
    self->pb.name = self->name;
    self->pb.params = self->inline_params;
    self->params_cap = S_INLINE_PARAMS;
    self->broken = false;
    self->packed_size = 0;
    self->done = (s_done_t){NULL, NULL};
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy an event and NULL the pointer. Safe on NULL.

void evr_event_destroy(evr_event_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    evr_event_t *self = *self_p;
    for (size_t i = 0; i < self->pb.n_params; i++)
        free(self->pb.params[i]);
    if (self->pb.params != self->inline_params)
        free(self->pb.params);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Append a new param with the given name (NULL = positional). It is one
//  allocation: the message, then the name, then the string value. value
//  NULL with is_str = a null string. Marks the event broken on failure.

static int s_event_add(evr_event_t *self, const char *name, bool is_str,
                       const char *value, size_t len, int64_t int_value)
{
    if (!self)
        return -1;
    if (self->broken)
        return -1;
    if (self->pb.n_params >= EVR_DEFAULT_MAX_PARAMS ||
        (is_str && !value && len > 0))
        goto broken;
    if (self->pb.n_params == self->params_cap) {
        size_t cap = self->params_cap * 2;
        Evrelay__Param **params = malloc(cap * sizeof(*params));
        if (!params)
            goto broken;
        memcpy(params, self->pb.params, self->pb.n_params * sizeof(*params));
        if (self->pb.params != self->inline_params)
            free(self->pb.params);
        self->pb.params = params;
        self->params_cap = cap;
    }
    size_t name_size = name ? strlen(name) + 1 : 0;
    size_t value_size = is_str && value ? len + 1 : 0;
    Evrelay__Param *param =
        malloc(sizeof(Evrelay__Param) + name_size + value_size);
    if (!param)
        goto broken;
    evrelay__param__init(param);
    char *tail = (char *)(param + 1);
    if (name) {
        memcpy(tail, name, name_size);
        param->name = tail;
        tail += name_size;
    }
    if (!is_str) {
        param->value_case = EVRELAY__PARAM__VALUE_INT_VALUE;
        param->int_value = int_value;
    } else if (value) {
        memcpy(tail, value, len);
        tail[len] = '\0';
        param->value_case = EVRELAY__PARAM__VALUE_STR_VALUE;
        param->str_value.data = (uint8_t *)tail;
        param->str_value.len = len;
    }
    self->pb.params[self->pb.n_params++] = param;
    return 0;

broken:
    self->broken = true;
    return -1;
}

//  --------------------------------------------------------------------------
//  Add an integer param. Returns 0 or -1.

int evr_event_add_int(evr_event_t *self, const char *name, int64_t value)
{
    return s_event_add(self, name, false, NULL, 0, value);
}

//  --------------------------------------------------------------------------
//  Add a string param (NULL = JSON null). Returns 0 or -1.

int evr_event_add_str(evr_event_t *self, const char *name, const char *value)
{
    return s_event_add(self, name, true, value, value ? strlen(value) : 0, 0);
}

//  --------------------------------------------------------------------------
//  Add a string param of len bytes. Returns 0 or -1.

int evr_event_add_strn(evr_event_t *self, const char *name, const char *value,
                       size_t len)
{
    return s_event_add(self, name, true, value, len, 0);
}

//  --------------------------------------------------------------------------
//  Window: the batch at position i (0 = oldest).

static s_batch_t *s_window_at(s_window_t *window, size_t i)
{
    return &window->slots[(window->head + i) & (window->cap - 1)];
}

//  --------------------------------------------------------------------------
//  Window: append a batch (its seqs follow every batch already there).
//  Returns 0 or -1 when out of memory.

static int s_window_push(s_window_t *window, const s_batch_t *batch)
{
    if (window->count == window->cap) {
        size_t cap = window->cap ? window->cap * 2 : 64;
        s_batch_t *slots = malloc(cap * sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < window->count; i++)
            slots[i] = *s_window_at(window, i);
        free(window->slots);
        window->slots = slots;
        window->cap = cap;
        window->head = 0;
    }
    *s_window_at(window, window->count++) = *batch;
    return 0;
}

//  --------------------------------------------------------------------------
//  Window: drop finished batches from the front.

static void s_window_trim(s_window_t *window)
{
    while (window->count && window->slots[window->head].done) {
        window->head = (window->head + 1) & (window->cap - 1);
        window->count--;
    }
}

//  --------------------------------------------------------------------------
//  Window: the batch that starts at first_seq, or NULL.

static s_batch_t *s_window_find(s_window_t *window, uint64_t first_seq)
{
    size_t lo = 0, hi = window->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        s_batch_t *batch = s_window_at(window, mid);
        if (batch->first_seq == first_seq)
            return batch;
        if (batch->first_seq < first_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Under lock: wake flushers when nothing is queued or unacked any more and
//  no outcome callback waits.

static void s_signal_if_idle(evr_client_t *self)
{
    if (self->ring_count == 0 && self->in_flight == 0 &&
        self->ndropped_cbs == 0)
        pthread_cond_broadcast(&self->idle);
}

//  --------------------------------------------------------------------------
//  Call an outcome callback, if there is one. Never under the lock.

static void s_fire(const s_done_t *done, evr_done_t outcome)
{
    if (done && done->fn)
        done->fn(done->arg, outcome);
}

//  --------------------------------------------------------------------------
//  Poke the background thread.

static void s_wake(evr_client_t *self)
{
    uint64_t one = 1;
    ssize_t rc = write(self->wakefd, &one, sizeof(one));
    (void)rc; //  EAGAIN: the counter is already non-zero, thread will wake
}

//  --------------------------------------------------------------------------
//  Under lock: keep the callback of an event dropped from the ring for the
//  thread. Returns 0, or -1 when out of memory (the caller then calls it).

static int s_keep_dropped_cb(evr_client_t *self, const s_done_t *done)
{
    if (self->ndropped_cbs == self->capdropped_cbs) {
        size_t cap =
            self->capdropped_cbs ? self->capdropped_cbs * 2 : S_DROPPED_CBS_MIN;
        s_done_t *grown = realloc(self->dropped_cbs, cap * sizeof(*grown));
        if (!grown)
            return -1;
        self->dropped_cbs = grown;
        self->capdropped_cbs = cap;
    }
    self->dropped_cbs[self->ndropped_cbs++] = *done;
    return 0;
}

//  --------------------------------------------------------------------------
//  Raise the event with an optional callback: validate it, stamp it and
//  queue it, dropping the oldest queued event when the queue is full.
//  Never blocks. Returns 0 or -1 (fn is then called before returning).

static int s_raise(evr_client_t *self, evr_event_t **event_p, evr_done_fn *fn,
                   void *arg)
{
    s_done_t mine = {fn, arg};
    if (!event_p || !*event_p) {
        s_fire(&mine, EVR_DONE_REJECTED);
        return -1;
    }
    evr_event_t *event = *event_p;
    *event_p = NULL;
    if (!self) {
        evr_event_destroy(&event);
        s_fire(&mine, EVR_DONE_REJECTED);
        return -1;
    }
    event->done = mine;
    bool valid = !event->broken && event->pb.n_params <= EVR_DEFAULT_MAX_PARAMS;
    if (valid) {
        event->pb.has_raised_us = 1;
        event->pb.raised_us = s_wall_us();
        event->packed_size = evrelay__event__get_packed_size(&event->pb);
        valid = event->packed_size <= EVR_DEFAULT_MAX_EVENT_BYTES;
    }
    evr_event_t *dropped = NULL;
    bool wake = false, fire_dropped = false;
    evr_done_t refusal = EVR_DONE_REJECTED;
    int rc = 0;

    pthread_mutex_lock(&self->lock);
    if (self->stopping) {
        refusal = EVR_DONE_DROPPED;
        rc = -1;
    } else if (!valid) {
        self->stats.rejected++;
        rc = -1;
    } else {
        if (self->ring_count == self->queue_max) {
            dropped = self->ring[self->ring_head];
            self->ring_head = (self->ring_head + 1) % self->queue_max;
            self->ring_count--;
            self->stats.dropped++;
            if (dropped->done.fn) {
                if (s_keep_dropped_cb(self, &dropped->done) == 0)
                    wake |= self->ndropped_cbs == 1;
                else
                    fire_dropped = true;
            }
        }
        self->ring[(self->ring_head + self->ring_count) % self->queue_max] =
            event;
        self->ring_count++;
        self->stats.raised++;
        wake |= self->ring_count == 1 || self->ring_count == self->batch_max;
        event = NULL;
    }
    pthread_mutex_unlock(&self->lock);

    if (fire_dropped)
        s_fire(&dropped->done, EVR_DONE_DROPPED);
    evr_event_destroy(&dropped);
    evr_event_destroy(&event);
    if (wake)
        s_wake(self);
    if (rc)
        s_fire(&mine, refusal);
    return rc;
}

//  --------------------------------------------------------------------------
//  Raise the event: see s_raise. Returns 0 or -1.

int evr_raise(evr_client_t *self, evr_event_t **event_p)
{
    return s_raise(self, event_p, NULL, NULL);
}

//  --------------------------------------------------------------------------
//  Raise the event and call fn(arg, outcome) exactly once when its fate is
//  known. Returns 0 or -1.

int evr_raise_cb(evr_client_t *self, evr_event_t **event_p, evr_done_fn *fn,
                 void *arg)
{
    return s_raise(self, event_p, fn, arg);
}

//  --------------------------------------------------------------------------
//  Thread: take the next batch off the ring into self->taken, if one is due:
//  a full batch at once, a partial one after linger. Only when the window
//  has room for it. Sets *linger_at when a partial batch waits. Returns the
//  number of events taken.

static size_t s_take(evr_client_t *self, int64_t now, int64_t *linger_at)
{
    size_t taken = 0;
    pthread_mutex_lock(&self->lock);
    size_t avail = self->ring_count;
    if (avail == 0) {
        self->pending_since = 0;
        goto done;
    }
    if (self->pending_since == 0)
        self->pending_since = now;
    size_t want = avail < self->batch_max ? avail : self->batch_max;
    if (self->ack_point != EVR_ACK_NONE &&
        self->in_flight + want > self->window_max)
        goto done; //  an ack will wake us
    if (want < self->batch_max && now < self->pending_since + self->linger_us) {
        *linger_at = self->pending_since + self->linger_us;
        goto done;
    }
    //  Keep the Publish under the frame limit the relays enforce
    size_t bytes = S_PUBLISH_OVERHEAD;
    while (taken < want) {
        evr_event_t *event = self->ring[self->ring_head];
        size_t size =
            1 + s_varint_size(event->packed_size) + event->packed_size;
        if (taken > 0 && bytes + size > EVR_DEFAULT_MAX_FRAME_BYTES)
            break;
        bytes += size;
        self->taken[taken++] = event;
        self->ring_head = (self->ring_head + 1) % self->queue_max;
        self->ring_count--;
    }
    self->in_flight += taken;
    self->pending_since = self->ring_count ? now : 0;
done:
    pthread_mutex_unlock(&self->lock);
    return taken;
}

//  --------------------------------------------------------------------------
//  Thread: send a batch's bytes without blocking. Returns 0, or -1 when no
//  relay can take it now (EAGAIN) or on another error.

static int s_send(evr_client_t *self, const s_batch_t *batch)
{
    return zmq_send(self->dealer, batch->data, batch->size, ZMQ_DONTWAIT) == -1
               ? -1
               : 0;
}

//  --------------------------------------------------------------------------
//  Thread: the callbacks of the n events in self->taken, in a new array, or
//  NULL when none of them has one (or out of memory: *lost set, the
//  callbacks are then fired DROPPED by the caller).

static s_done_t *s_take_dones(evr_client_t *self, size_t n, bool *lost)
{
    size_t i = 0;
    while (i < n && !self->taken[i]->done.fn)
        i++;
    *lost = false;
    if (i == n)
        return NULL;
    s_done_t *dones = malloc(n * sizeof(*dones));
    if (!dones) {
        *lost = true;
        return NULL;
    }
    for (i = 0; i < n; i++)
        dones[i] = self->taken[i]->done;
    return dones;
}

//  --------------------------------------------------------------------------
//  Thread: fire one outcome for each of count callbacks (dones may be
//  NULL), then free the array.

static void s_fire_all(s_done_t *dones, size_t count, evr_done_t outcome)
{
    for (size_t i = 0; dones && i < count; i++)
        s_fire(&dones[i], outcome);
    free(dones);
}

//  --------------------------------------------------------------------------
//  Thread: NONE: send a packed batch once and forget it; what cannot be
//  sent now is dropped. Fires the callbacks (ACKED once sent) and counts.

static void s_publish_once(evr_client_t *self, s_batch_t *batch)
{
    bool sent = batch->data && s_send(self, batch) == 0;
    s_fire_all(batch->dones, batch->count,
               sent ? EVR_DONE_ACKED : EVR_DONE_DROPPED);
    batch->dones = NULL;
    free(batch->data);
    batch->data = NULL;
    pthread_mutex_lock(&self->lock);
    if (sent)
        self->stats.sent += batch->count;
    else
        self->stats.dropped += batch->count;
    self->in_flight -= batch->count;
    s_signal_if_idle(self);
    pthread_mutex_unlock(&self->lock);
}

//  --------------------------------------------------------------------------
//  Thread: number, pack and send the n events in self->taken, keep the
//  batch in the window (not with NONE), and free the events.

static void s_publish(evr_client_t *self, size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++)
        self->pb_events[i] = &self->taken[i]->pb;
    Evrelay__Publish publish = EVRELAY__PUBLISH__INIT;
    publish.version = EVR_PROTOCOL_VERSION;
    publish.producer_id.data = self->producer_id;
    publish.producer_id.len = S_PRODUCER_ID_BYTES;
    publish.epoch = self->epoch;
    publish.first_seq = self->next_seq;
    publish.n_events = n;
    publish.events = self->pb_events;
    //  ACCEPTED is the field's default: left out, as before it existed
    if (self->ack_point == EVR_ACK_DELIVERED) {
        publish.has_ack_point = 1;
        publish.ack_point = EVRELAY__ACK_POINT__DELIVERED;
    } else if (self->ack_point == EVR_ACK_NONE) {
        publish.has_ack_point = 1;
        publish.ack_point = EVRELAY__ACK_POINT__NONE;
    }

    s_batch_t batch = {.first_seq = self->next_seq,
                       .count = (uint32_t)n,
                       .ivl_us = self->resend_us};
    bool lost = false;
    batch.dones = s_take_dones(self, n, &lost);
    self->next_seq += n; //  used up even if the batch is lost below
    batch.size = evrelay__publish__get_packed_size(&publish);
    batch.data = lost ? NULL : malloc(batch.size);
    if (batch.data)
        evrelay__publish__pack(&publish, batch.data);
    else if (lost)
        for (size_t i = 0; i < n; i++)
            s_fire(&self->taken[i]->done, EVR_DONE_DROPPED);
    for (size_t i = 0; i < n; i++)
        evr_event_destroy(&self->taken[i]);
    if (self->ack_point == EVR_ACK_NONE && !lost) {
        s_publish_once(self, &batch);
        return;
    }

    s_batch_t *kept = NULL;
    if (batch.data && s_window_push(&self->window, &batch) == 0)
        kept = s_window_at(&self->window, self->window.count - 1);
    //  Batches leave in sequence order: while an older one still waits for
    //  a relay (unsent batches are always at the tail), this one waits too.
    s_batch_t *prev = self->window.count > 1
                          ? s_window_at(&self->window, self->window.count - 2)
                          : NULL;
    bool behind = prev && !prev->done && !prev->sent;
    if (kept && !behind && s_send(self, kept) == 0) {
        kept->sent = true;
        kept->deadline_us = now + kept->ivl_us;
    } else if (kept && behind)
        kept->deadline_us = prev->deadline_us;
    else if (kept)
        kept->deadline_us =
            now + (kept->ivl_us < S_EAGAIN_RETRY_US ? kept->ivl_us
                                                    : S_EAGAIN_RETRY_US);
    if (!kept) {
        //  Out of memory: the events are lost, and counted
        s_fire_all(batch.dones, n, EVR_DONE_DROPPED);
        free(batch.data);
    }
    pthread_mutex_lock(&self->lock);
    if (kept && kept->sent)
        self->stats.sent += n;
    if (!kept) {
        self->stats.dropped += n;
        self->in_flight -= n;
        s_signal_if_idle(self);
    }
    pthread_mutex_unlock(&self->lock);
    if (kept && kept->deadline_us < self->resend_at)
        self->resend_at = kept->deadline_us;
}

//  --------------------------------------------------------------------------
//  Thread: resend every batch past its deadline and work out the earliest
//  deadline left. Once a send fails (no relay connected) the other due
//  batches only get a new deadline.

static void s_resend_due(evr_client_t *self, int64_t now)
{
    uint64_t sent = 0, resent = 0;
    bool blocked = false;
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < self->window.count; i++) {
        s_batch_t *batch = s_window_at(&self->window, i);
        if (batch->done)
            continue;
        if (batch->deadline_us <= now) {
            if (!blocked && s_send(self, batch) == 0) {
                if (batch->sent) {
                    resent += batch->count;
                    batch->ivl_us *= 2;
                    if (batch->ivl_us > EVR_DEFAULT_RESEND_MAX_MS * 1000LL)
                        batch->ivl_us = EVR_DEFAULT_RESEND_MAX_MS * 1000LL;
                } else
                    sent += batch->count;
                batch->sent = true;
                batch->deadline_us = now + batch->ivl_us;
            } else {
                blocked = true;
                batch->deadline_us = now + (batch->ivl_us < S_EAGAIN_RETRY_US
                                                ? batch->ivl_us
                                                : S_EAGAIN_RETRY_US);
            }
        }
        if (batch->deadline_us < next)
            next = batch->deadline_us;
    }
    self->resend_at = next;
    if (sent || resent) {
        pthread_mutex_lock(&self->lock);
        self->stats.sent += sent;
        self->stats.resent += resent;
        pthread_mutex_unlock(&self->lock);
    }
}

//  --------------------------------------------------------------------------
//  Thread: mark a batch finished and free its bytes and callbacks.

static void s_batch_finish(s_batch_t *batch)
{
    free(batch->data);
    batch->data = NULL;
    free(batch->dones);
    batch->dones = NULL;
    batch->done = true;
}

//  --------------------------------------------------------------------------
//  Thread: fire the callbacks of a batch by self->outcomes.

static void s_fire_outcomes(evr_client_t *self, const s_batch_t *batch)
{
    static const evr_done_t done[] = {EVR_DONE_ACKED, EVR_DONE_FAILED,
                                      EVR_DONE_REJECTED};
    for (uint32_t i = 0; batch->dones && i < batch->count; i++)
        s_fire(&batch->dones[i], done[self->outcomes[i]]);
}

//  --------------------------------------------------------------------------
//  Thread: apply one decoded ack. Acks for another producer or epoch, or
//  with another protocol version, are ignored.

static void s_handle_ack(evr_client_t *self, const Evrelay__Ack *ack)
{
    if (!evr_ack_is_ours(ack, self->producer_id, S_PRODUCER_ID_BYTES,
                         self->epoch))
        return;
    evr_ack_counts_t counts = {0};

    //  The batch this ack answers
    s_batch_t *batch = s_window_find(&self->window, ack->first_seq);
    if (batch && !batch->done && batch->count == ack->count) {
        evr_ack_outcomes(ack, batch->count,
                         self->ack_point == EVR_ACK_DELIVERED, self->outcomes,
                         &counts);
        s_fire_outcomes(self, batch);
        s_batch_finish(batch);
    }
    //  Everything up to acked_through: a prefix of the window
    for (size_t i = 0; i < self->window.count; i++) {
        batch = s_window_at(&self->window, i);
        if (batch->done)
            continue;
        if (batch->first_seq + batch->count - 1 > ack->acked_through)
            break;
        counts.acked += batch->count;
        s_fire_all(batch->dones, batch->count, EVR_DONE_ACKED);
        batch->dones = NULL;
        s_batch_finish(batch);
    }
    s_window_trim(&self->window);
    if (self->window.count == 0)
        self->resend_at = INT64_MAX;

    if (counts.acked || counts.failed || counts.rejected) {
        pthread_mutex_lock(&self->lock);
        self->stats.acked += counts.acked;
        self->stats.failed += counts.failed;
        self->stats.rejected += counts.rejected;
        self->in_flight -= counts.acked + counts.failed + counts.rejected;
        s_signal_if_idle(self);
        pthread_mutex_unlock(&self->lock);
    }
}

//  --------------------------------------------------------------------------
//  Thread: read every waiting message on the DEALER and apply the acks. A
//  message's last frame is the ack; anything too big or undecodable is
//  ignored.

static void s_recv_acks(evr_client_t *self)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, self->dealer, ZMQ_DONTWAIT) != -1) {
        if (zmq_msg_more(&msg))
            continue; //  an envelope frame: the ack is last
        Evrelay__Ack *ack =
            evr_ack_decode(zmq_msg_data(&msg), zmq_msg_size(&msg));
        if (ack) {
            s_handle_ack(self, ack);
            evrelay__ack__free_unpacked(ack, NULL);
        }
    }
    zmq_msg_close(&msg);
}

//  --------------------------------------------------------------------------
//  Thread: milliseconds from now until deadline (rounded up), for
//  zmq_poll; -1 = no deadline.

static long s_timeout_ms(int64_t now, int64_t deadline)
{
    if (deadline == INT64_MAX)
        return -1;
    if (deadline <= now)
        return 0;
    int64_t ms = (deadline - now + 999) / 1000;
    return ms > INT_MAX ? INT_MAX : (long)ms;
}

//  --------------------------------------------------------------------------
//  Thread: whether a new batch may be taken off the ring now. Always with
//  a window (it bounds what is sent); with NONE only while the DEALER can
//  take a message (a relay is connected and below its high-water mark):
//  meanwhile events wait in the bounded ring, where the oldest is dropped
//  when it is full, as in every mode.

static bool s_can_send(evr_client_t *self)
{
    if (self->ack_point != EVR_ACK_NONE)
        return true;
    int events = 0;
    size_t len = sizeof(events);
    if (zmq_getsockopt(self->dealer, ZMQ_EVENTS, &events, &len) == -1)
        return true; //  then the send fails and the batch is dropped
    return (events & ZMQ_POLLOUT) != 0;
}

//  --------------------------------------------------------------------------
//  Thread: fire DROPPED for the callbacks evr_raise kept for events it
//  dropped from a full ring.

static void s_fire_dropped(evr_client_t *self)
{
    pthread_mutex_lock(&self->lock);
    s_done_t *cbs = self->dropped_cbs;
    size_t n = self->ndropped_cbs;
    self->dropped_cbs = NULL;
    self->ndropped_cbs = self->capdropped_cbs = 0;
    pthread_mutex_unlock(&self->lock);
    if (!n) {
        free(cbs);
        return;
    }
    s_fire_all(cbs, n, EVR_DONE_DROPPED);
    pthread_mutex_lock(&self->lock);
    s_signal_if_idle(self);
    pthread_mutex_unlock(&self->lock);
}

//  --------------------------------------------------------------------------
//  Thread, at its end: refuse new raises, then drop what is still queued or
//  unacked, firing DROPPED for every callback, and count it.

static void s_sweep(evr_client_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    size_t nring = self->ring_count;
    evr_event_t **ring = malloc((nring ? nring : 1) * sizeof(*ring));
    for (size_t i = 0; ring && i < nring; i++)
        ring[i] = self->ring[(self->ring_head + i) % self->queue_max];
    if (ring)
        self->ring_count = 0;
    pthread_mutex_unlock(&self->lock);

    for (size_t i = 0; ring && i < nring; i++) {
        s_fire(&ring[i]->done, EVR_DONE_DROPPED);
        evr_event_destroy(&ring[i]);
    }
    free(ring);
    uint64_t unacked = 0;
    for (size_t i = 0; i < self->window.count; i++) {
        s_batch_t *batch = s_window_at(&self->window, i);
        if (batch->done)
            continue;
        unacked += batch->count;
        s_fire_all(batch->dones, batch->count, EVR_DONE_DROPPED);
        batch->dones = NULL;
        s_batch_finish(batch);
    }
    s_window_trim(&self->window);
    s_fire_dropped(self);

    pthread_mutex_lock(&self->lock);
    self->stats.dropped += unacked + (ring ? nring : 0);
    self->in_flight -= unacked;
    pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->lock);
}

//  --------------------------------------------------------------------------
//  The background thread: send due batches, resend late ones, wait for
//  raises, acks or a timer, until the client stops.

static void *s_thread(void *arg)
{
    evr_client_t *self = arg;
    zmq_pollitem_t items[] = {{self->dealer, 0, ZMQ_POLLIN, 0},
                              {NULL, self->wakefd, ZMQ_POLLIN, 0}};
    while (true) {
        pthread_mutex_lock(&self->lock);
        bool stopping = self->stopping;
        bool dropped_cbs = self->ndropped_cbs > 0;
        pthread_mutex_unlock(&self->lock);
        if (stopping)
            break;
        if (dropped_cbs)
            s_fire_dropped(self);

        int64_t now = s_mono_us();
        int64_t linger_at = INT64_MAX;
        size_t n;
        bool blocked = false;
        while (!(blocked = !s_can_send(self)) &&
               (n = s_take(self, now, &linger_at)) > 0)
            s_publish(self, n, now);
        if (now >= self->resend_at) {
            //  Acks that came while this thread was held up (descheduled,
            //  a busy host) finish their batches first: no needless resend
            s_recv_acks(self);
            if (now >= self->resend_at)
                s_resend_due(self, now);
        }

        //  NONE waiting for a relay to take more: wake when one can
        items[0].events = ZMQ_POLLIN | (blocked ? ZMQ_POLLOUT : 0);
        int64_t deadline =
            linger_at < self->resend_at ? linger_at : self->resend_at;
        if (zmq_poll(items, 2, s_timeout_ms(now, deadline)) == -1) {
            if (errno == EINTR)
                continue;
            break; //  ETERM or worse: nothing more we can do
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t value;
            ssize_t rc = read(self->wakefd, &value, sizeof(value));
            (void)rc; //  EAGAIN: someone else's poke was already read
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_recv_acks(self);
    }
    s_sweep(self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Set an int socket option. Returns 0 or -1.

static int s_set_int(void *socket, int option, int value)
{
    return zmq_setsockopt(socket, option, &value, sizeof(value));
}

//  --------------------------------------------------------------------------
//  The i-th comma-separated item of list (trimmed) into out, or the only
//  one when list has a single item. Returns 0, or -1 when there is none.

static int s_item(const char *list, int i, char *out, size_t cap)
{
    if (!strchr(list, ','))
        i = 0;
    const char *p = list;
    for (; i > 0 && p; i--)
        p = (p = strchr(p, ',')) ? p + 1 : NULL;
    if (!p)
        return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, ",");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

//  Create the DEALER and connect it to every comma-separated endpoint,
//  over CURVE when the options name a certificate.
//  Returns 0 or -1 on a bad endpoint or key.

static int s_connect(evr_client_t *self, const char *endpoints,
                     const evr_client_opts_t *o)
{
    self->dealer = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    //  The window bounds what is in flight; the HWM must never bind first.
    //  NONE has no window: the HWM (in batches) bounds what ZeroMQ holds to
    //  about a window's worth, beyond which batches are dropped.
    int hwm = (int)self->window_max * 2;
    if (self->ack_point == EVR_ACK_NONE)
        hwm = (int)(self->window_max / self->batch_max) * 2 + S_NONE_HWM_MIN;
    if (s_set_int(self->dealer, ZMQ_IMMEDIATE, 1) ||
        s_set_int(self->dealer, ZMQ_LINGER,
                  self->ack_point == EVR_ACK_NONE ? S_NONE_LINGER_MS : 0) ||
        s_set_int(self->dealer, ZMQ_SNDHWM, hwm) ||
        s_set_int(self->dealer, ZMQ_RCVHWM, hwm) ||
        s_set_int(self->dealer, ZMQ_IPV6, 1) ||
        s_set_int(self->dealer, ZMQ_RECONNECT_IVL_MAX,
                  S_RECONNECT_IVL_MAX_MS) ||
        s_set_int(self->dealer, ZMQ_HEARTBEAT_IVL, S_HEARTBEAT_IVL_MS) ||
        s_set_int(self->dealer, ZMQ_HEARTBEAT_TIMEOUT,
                  S_HEARTBEAT_TIMEOUT_MS) ||
        s_set_int(self->dealer, ZMQ_HEARTBEAT_TTL, S_HEARTBEAT_TTL_MS))
        return -1;

    char *list = strdup(endpoints);
    if (!list)
        return -1;
    int rc = 0, connected = 0;
    char *saveptr = NULL;
    for (char *ep = strtok_r(list, ",", &saveptr); ep && rc == 0;
         ep = strtok_r(NULL, ",", &saveptr)) {
        while (*ep == ' ' || *ep == '\t')
            ep++;
        char *end = ep + strlen(ep);
        while (end > ep && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        char key[4096], why[256];
        if (o->cert &&
            (s_item(o->server_key ? o->server_key : "", connected, key,
                    sizeof key) ||
             evr_curve_client(self->dealer, o->cert, key, why, sizeof why)))
            rc = -1;
        else if (*ep == '\0' || zmq_connect(self->dealer, ep) == -1)
            rc = -1;
        else
            connected++;
    }
    free(list);
    return rc == 0 && connected > 0 ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Fill the producer id with random bytes; fall back to clock and pid
//  material if the kernel has none to give.

static void s_producer_id(uint8_t *id)
{
    size_t got = 0;
    while (got < S_PRODUCER_ID_BYTES) {
        ssize_t rc = getrandom(id + got, S_PRODUCER_ID_BYTES - got, 0);
        if (rc <= 0)
            break;
        got += (size_t)rc;
    }
    if (got < S_PRODUCER_ID_BYTES) {
        uint64_t a = s_wall_us(),
                 b = (uint64_t)s_mono_us() ^ ((uint64_t)getpid() << 32);
        memcpy(id, &a, 8);
        memcpy(id + 8, &b, 8);
    }
}

//  --------------------------------------------------------------------------
//  Free what evr_client_new built; the thread must not be running.

static void s_client_free(evr_client_t *self)
{
    if (self->dealer)
        zmq_close(self->dealer);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    if (self->wakefd >= 0)
        close(self->wakefd);
    if (self->ring) {
        for (size_t i = 0; i < self->ring_count; i++)
            evr_event_destroy(
                &self->ring[(self->ring_head + i) % self->queue_max]);
        free(self->ring);
    }
    for (size_t i = 0; i < self->window.count; i++) {
        free(s_window_at(&self->window, i)->data);
        free(s_window_at(&self->window, i)->dones);
    }
    free(self->window.slots);
    free(self->taken);
    free(self->pb_events);
    free(self->outcomes);
    free(self->dropped_cbs);
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

//  --------------------------------------------------------------------------
//  Connect to the relays and start the background thread. NULL on a bad
//  endpoint, bad options or out of memory.

evr_client_t *evr_client_new(const char *endpoints,
                             const evr_client_opts_t *opts)
{
    if (!endpoints)
        return NULL;
    evr_client_opts_t o = {0};
    if (opts)
        o = *opts;
    if (o.linger_ms < 0 || o.resend_ms < 0 ||
        (o.ack_point != EVR_ACK_ACCEPTED && o.ack_point != EVR_ACK_DELIVERED &&
         o.ack_point != EVR_ACK_NONE))
        return NULL;
    evr_client_t *self = calloc(1, sizeof(evr_client_t));
    if (!self)
        return NULL;
    self->queue_max =
        o.queue_events ? o.queue_events : EVR_DEFAULT_CLIENT_QUEUE;
    self->window_max =
        o.window_events ? o.window_events : EVR_DEFAULT_CLIENT_WINDOW;
    //  A relay forgets seqs older than its dedupe window and then acks past
    //  them cumulatively: the unacked window must stay well inside it.
    if (self->window_max > EVR_DEFAULT_DEDUP_WINDOW / 2)
        self->window_max = EVR_DEFAULT_DEDUP_WINDOW / 2;
    self->batch_max =
        o.batch_events ? o.batch_events : EVR_DEFAULT_BATCH_EVENTS;
    if (self->batch_max > self->window_max)
        self->batch_max = self->window_max;
    self->linger_us =
        1000LL * (o.linger_ms ? o.linger_ms : EVR_DEFAULT_LINGER_MS);
    self->resend_us =
        1000LL * (o.resend_ms ? o.resend_ms : EVR_DEFAULT_RESEND_MS);
    self->ack_point = o.ack_point;
    s_producer_id(self->producer_id);
    self->epoch = s_wall_us();
    self->next_seq = 1;
    self->resend_at = INT64_MAX;
    self->wakefd = -1;

    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->idle, &attr);
    pthread_condattr_destroy(&attr);

    self->ring = calloc(self->queue_max, sizeof(*self->ring));
    self->taken = calloc(self->batch_max, sizeof(*self->taken));
    self->pb_events = calloc(self->batch_max, sizeof(*self->pb_events));
    self->outcomes = calloc(self->batch_max, 1);
    self->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->ctx = zmq_ctx_new();
    if (!self->ring || !self->taken || !self->pb_events || !self->outcomes ||
        self->wakefd < 0 || !self->ctx ||
        s_connect(self, endpoints, &o) == -1) {
        s_client_free(self);
        return NULL;
    }
    //  The thread takes no signals: they belong to the host application
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&self->thread, NULL, s_thread, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        s_client_free(self);
        return NULL;
    }
    self->thread_started = true;
    return self;
}

//  --------------------------------------------------------------------------
//  Stop the thread, drop what is still queued or unacked, free the client
//  and NULL the pointer. Safe on NULL.

void evr_client_destroy(evr_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    evr_client_t *self = *self_p;
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->lock);
    if (self->thread_started) {
        s_wake(self);
        pthread_join(self->thread, NULL);
    }
    s_client_free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Wait until every raised event is acked (or rejected, or dropped), at
//  most timeout_ms; a negative timeout waits without limit. Returns 0 when
//  nothing is left, -1 on timeout or when the client is stopping.

int evr_client_flush(evr_client_t *self, int timeout_ms)
{
    if (!self)
        return -1;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&self->lock);
    while ((self->ring_count || self->in_flight || self->ndropped_cbs) &&
           !self->stopping) {
        int rc =
            timeout_ms < 0
                ? pthread_cond_wait(&self->idle, &self->lock)
                : pthread_cond_timedwait(&self->idle, &self->lock, &deadline);
        if (rc == ETIMEDOUT)
            break;
    }
    int rc = self->ring_count || self->in_flight || self->ndropped_cbs ||
                     self->stopping
                 ? -1
                 : 0;
    pthread_mutex_unlock(&self->lock);
    return rc;
}

//  --------------------------------------------------------------------------
//  Copy the client's counters into *stats.

void evr_client_stats(evr_client_t *self, evr_client_stats_t *stats)
{
    assert(stats);
    if (!self) {
        memset(stats, 0, sizeof(*stats));
        return;
    }
    pthread_mutex_lock(&self->lock);
    *stats = self->stats;
    stats->queued = self->ring_count;
    stats->in_flight = self->in_flight;
    pthread_mutex_unlock(&self->lock);
}

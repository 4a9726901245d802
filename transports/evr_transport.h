/*  evr_transport.h - the worker side of targets: how a transport plugs in.

    Internal to transports/ and the delivery worker. A transport is a table
    of functions (evr_transport_ops_t) over a target's private state. The
    generic target (evr_target.c) owns the queue of deliveries, the
    counters and the virtual-parent bookkeeping; a transport takes
    deliveries off the queue, does the I/O without blocking, and reports
    each outcome with evr_target_complete(). An outcome can be immediate
    (datagram written) or later (a JSON-RPC reply, an AMQP confirm, an HTTP
    status): that is what lets FAILOVER move an event on when a child fails
    after the hand-off.

    The worker is a reactor: it asks every active target for the fds or
    ZeroMQ sockets to poll (poll_items) and its next timer, and calls
    on_poll / on_timer / flush (every now_us is the monotonic clock,
    zclock_usecs). A target is active while it has queued or
    in-flight deliveries or an open connection (busy).
*/
#ifndef EVR_TRANSPORT_H_INCLUDED
#define EVR_TRANSPORT_H_INCLUDED

#include "evr_target.h"
#include "evr_track.h"
#include <sys/socket.h>
#include <zmq.h>

//  One message on its way to one target.
typedef struct {
    evr_msg_t *msg;    //  one reference (the payload of this target's format)
    evr_msg_t *bundle; //  virtual: the event's bundle (one reference), or NULL
    evr_target_t *parent; //  virtual parent (one reference), or NULL
    uint32_t tried;       //  virtual: bitmask of children tried for this event
    uint32_t event;       //  the event's index in its tracker's batch
    evr_track_t *track; //  DELIVERED: one hold on the batch's tracker, or NULL
    uint64_t tag;       //  transport use (JSON-RPC id, AMQP delivery tag, ...)
    int64_t t_us;       //  transport use (sent time, deadline)
} evr_delivery_t;

//  Delivery trackers (relay/evr_track.h): a top-level delivery holds its
//  batch's tracker until its final outcome. evr_target_complete,
//  evr_target_abort and the queue-full paths let the hold go; a virtual
//  parent moves the hold from child to child (FAILOVER, ROUND-ROBIN) or
//  gives each copy its own (PARALLEL). A transport that releases a
//  delivery without an outcome (its close function) calls
//  evr_delivery_forget.

typedef struct _evr_reactor_t evr_reactor_t;

typedef struct {
    const char *name;
    //  Core thread, at creation: prepare (validate, resolve), no blocking
    //  network I/O. Returns 0 or -1 with err.
    int (*open)(evr_target_t *t, char *err, size_t errlen);
    //  Last reference gone (any thread; the worker no longer uses it):
    //  free the private state. In-flight deliveries were already
    //  completed through abort.
    void (*close)(evr_target_t *t);
    //  Worker: send what the queue holds, as far as possible.
    void (*flush)(evr_target_t *t, int64_t now_us);
    //  Worker: fill up to max poll items; returns how many.
    int (*poll_items)(evr_target_t *t, zmq_pollitem_t *items, int max);
    //  Worker: the items filled by poll_items, with revents.
    void (*on_poll)(evr_target_t *t, zmq_pollitem_t *items, int n,
                    int64_t now_us);
    //  Worker: the next time (µs) on_timer should run; INT64_MAX = never.
    int64_t (*next_timer)(evr_target_t *t);
    void (*on_timer)(evr_target_t *t, int64_t now_us);
    //  Worker: whether the target needs the reactor although its queue is
    //  empty (in-flight deliveries, an open connection to watch).
    bool (*busy)(evr_target_t *t);
    //  Worker, at shutdown or when the target is orphaned: fail every
    //  in-flight delivery and close connections.
    void (*abort)(evr_target_t *t);
} evr_transport_ops_t;

//  The transports.
extern const evr_transport_ops_t evr_tr_datagram;
extern const evr_transport_ops_t evr_tr_flatstore;
extern const evr_transport_ops_t evr_tr_virtual;
extern const evr_transport_ops_t evr_tr_tcp;
extern const evr_transport_ops_t evr_tr_rabbitmq;
extern const evr_transport_ops_t evr_tr_zmq;
extern const evr_transport_ops_t evr_tr_http;

//  --- for transports -------------------------------------------------------

//  The target's parsed socket, options, and private state slot.
const evr_sockspec_t *evr_target_spec(const evr_target_t *self);
const evr_target_opts_t *evr_target_opts(const evr_target_t *self);
void *evr_target_state(const evr_target_t *self);
void evr_target_set_state(evr_target_t *self, void *state);

//  Resolve the spec's host and port once (numeric or a name, IPv4 or
//  IPv6; the first address wins) for a socket of `socktype`. Returns 0, or
//  -1 with a reason in err.
int evr_target_resolve(const evr_sockspec_t *spec, int socktype,
                       struct sockaddr_storage *addr, socklen_t *addrlen,
                       char *err, size_t errlen);

//  Number of deliveries waiting in the queue.
size_t evr_target_queued(const evr_target_t *self);

//  The i-th waiting delivery (0 = oldest).
evr_delivery_t *evr_target_peek(evr_target_t *self, size_t i);

//  Take the oldest waiting delivery off the queue into *out (the caller
//  now owns it and must complete it). Returns 0, or -1 when empty.
int evr_target_take(evr_target_t *self, evr_delivery_t *out);

//  Report the outcome of a delivery taken off the queue (or of the n
//  oldest still in the queue, see evr_target_complete_front): counts it,
//  and for a virtual child hands it back to the parent's policy.
void evr_target_complete(evr_target_t *self, evr_delivery_t *d, bool ok);

//  Complete the n oldest waiting deliveries with the same outcome.
void evr_target_complete_front(evr_target_t *self, size_t n, bool ok);

//  Queue a delivery (taking its references) and wake the worker for it.
//  Returns 0, or -1 when the queue is full (the delivery is then failed
//  back to its parent, or counted as dropped).
int evr_target_enqueue(evr_target_t *self, evr_delivery_t *d);

//  The flatstore reopen generation wanted for this target (a change means
//  "reopen before the next write").
int evr_target_reopen_generation(const evr_target_t *self);

//  virtual: create the children (used by the virtual transport's open).
int evr_target_make_children(evr_target_t *self, char *err, size_t errlen);
evr_target_t *evr_target_child_mut(evr_target_t *self, size_t i);

//  --- for the worker (evr_worker.c) ---------------------------------------

//  Worker: queue a message admitted by the core (takes the reference, and
//  the hold on track, which may be NULL, for event number `event`).
void evr_target_push(evr_target_t *self, evr_reactor_t *reactor, evr_msg_t *msg,
                     evr_track_t *track, uint32_t event);

//  Release a delivery that will never get an outcome (a transport's close,
//  the last reference of a target): drops its message references and lets
//  its tracker hold go as not delivered. The parent reference is left to
//  the caller.
void evr_delivery_forget(evr_delivery_t *d);

//  Let a delivery's tracker hold go (no-op without one): ok = delivered.
void evr_delivery_settle(evr_delivery_t *d, bool ok);

//  The transport functions of a target.
const evr_transport_ops_t *evr_target_ops(const evr_target_t *self);

//  Worker: mark the target as seen in pass `round`; returns true when it
//  was not marked for that round yet (cheap de-duplication of work lists).
//  Rounds start at 1: round 0 clears the mark.
bool evr_target_mark(evr_target_t *self, uint64_t round);

//  Worker: set whether the target is on the active list; returns the old
//  value.
bool evr_target_set_active(evr_target_t *self, bool active);

//  Worker: whether the target needs the reactor (queue or busy).
bool evr_target_needs_reactor(evr_target_t *self);

//  Worker: fail everything queued and in flight (shutdown, orphaned).
void evr_target_abort(evr_target_t *self);

//  Whether the core retired the target (unsubscribed): the worker then
//  aborts it.
bool evr_target_retired(const evr_target_t *self);

//  Implemented by the worker: put target on the reactor's work list.
void evr_reactor_wake(evr_reactor_t *reactor, evr_target_t *target);

//  Implemented by the worker: true while it is shutting down (outcomes
//  are then final: a virtual parent does not move events on).
bool evr_reactor_stopping(const evr_reactor_t *reactor);

//  Implemented by the virtual transport: a child reports the outcome of a
//  delivery the parent gave it (takes ownership of d's references).
void evr_tr_virtual_child_done(evr_target_t *parent, evr_target_t *child,
                               evr_delivery_t *d, bool ok);

//  Count an outcome on a target: delivered (with latency), failed or
//  dropped. evr_target_dequeued: one message fewer queued.
typedef enum {
    EVR_OUTCOME_DELIVERED = 0,
    EVR_OUTCOME_FAILED,
    EVR_OUTCOME_DROPPED
} evr_outcome_t;
void evr_target_count(evr_target_t *self, int64_t raised_us,
                      evr_outcome_t outcome);
void evr_target_dequeued(evr_target_t *self);

//  The reactor the target was woken on (NULL before its first message).
evr_reactor_t *evr_target_reactor(const evr_target_t *self);

#endif

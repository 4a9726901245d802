/*  evrelay.h - libevrelay, the client library of a raising node.

    A raising node (a SIP server, an application) links libevrelay to raise
    events into an evrelay cluster. evr_raise() never blocks: events go to
    a bounded in-memory queue (the oldest is dropped and counted when it is
    full) and a background thread batches them, publishes them to the
    relays over ZeroMQ, tracks the relays' acks and resends what is not
    acknowledged in time.

        evr_client_t *client = evr_client_new ("tcp://127.0.0.1:7950", NULL);
        evr_event_t *ev = evr_event_new ("E_PIKE_BLOCKED");
        evr_event_add_str (ev, "ip", "192.168.2.11");
        evr_raise (client, &ev);
        ...
        evr_client_flush (client, 5000);
        evr_client_destroy (&client);

    All functions are thread-safe except on one evr_event_t, which belongs
    to the thread building it.
*/
#ifndef EVRELAY_H_INCLUDED
#define EVRELAY_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _evr_client_t evr_client_t;
typedef struct _evr_event_t evr_event_t;

//  When a relay acknowledges an event (see docs/PROTOCOL.md).
typedef enum {
    EVR_ACK_ACCEPTED = 0, //  queued on a relay (default)
    EVR_ACK_DELIVERED,    //  the subscribers' transports confirmed it
    EVR_ACK_NONE //  fire-and-forget: sent once, never tracked or resent
} evr_ack_point_t;

//  The final outcome of one raised event, for evr_raise_cb.
typedef enum {
    EVR_DONE_ACKED = 0, //  acknowledged at the ack point
    EVR_DONE_FAILED,    //  DELIVERED: no subscriber's transport took it
    EVR_DONE_REJECTED,  //  refused by the client or a relay (size, name)
    EVR_DONE_DROPPED    //  dropped: queue overflow, or the client stopped
} evr_done_t;

//  Called once per event raised with evr_raise_cb, from the client's
//  background thread: keep it short and never call the client from it.
//  Exceptions: when evr_raise_cb returns -1, fn has already been called,
//  in the caller's thread (REJECTED for an invalid event or NULL client,
//  DROPPED when the client is stopping). Every callback of a raised event
//  runs before the event stops counting as queued or in flight, so when
//  evr_client_flush returns 0 every callback has run, and when
//  evr_client_destroy returns every callback has run (DROPPED for what was
//  left). Per ack point:
//    ACCEPTED   ACKED when a relay queued it; REJECTED when a relay
//               refused it (size, name); DROPPED on queue overflow or
//               destroy.
//    DELIVERED  as ACCEPTED, but ACKED only once every subscriber's
//               transport reached a final outcome with at least one
//               success (or the event had no subscriber); FAILED when it
//               had subscribers and none took it.
//    NONE       ACKED as soon as the batch was handed to ZeroMQ (no relay
//               confirms anything); DROPPED on queue overflow (events
//               wait in the queue while no relay is connected), on a
//               failed send, or on destroy.
typedef void(evr_done_fn)(void *arg, evr_done_t outcome);

//  Client options; zero-initialise, then set what you need. A zero field
//  takes its default (include/evr_defaults.h).
typedef struct {
    size_t queue_events;       //  caller-side queue bound (events)
    size_t window_events;      //  sent but unacked bound (events)
    size_t batch_events;       //  events per publish message
    int linger_ms;             //  wait for a fuller batch at most this long
    int resend_ms;             //  first resend timeout; doubles per retry
    evr_ack_point_t ack_point; //  EVR_ACK_ACCEPTED unless set
    //  CURVE (docs/SECURITY.md): this client's secret certificate file
    //  (evrelayctl keygen), and the relays' public keys: one for every
    //  endpoint, or a comma-separated list in the order of the endpoints;
    //  each 40 characters of Z85 or the path of a public certificate.
    //  NULL cert = plain ZeroMQ.
    const char *cert;
    const char *server_key;
} evr_client_opts_t;

//  NOTE (issue 5): `failed` was added at the END of evr_client_stats_t:
//  events a relay reported FAILED with the DELIVERED ack point (no
//  subscriber's transport took them). They are finished, not acked, and
//  never resent. Invariant with ACCEPTED and DELIVERED: raised = acked +
//  failed + rejected (by a relay) + dropped + queued + in_flight. With
//  NONE an event is finished once sent: raised = sent + dropped + rejected
//  + queued + in_flight, and acked stays 0 (callbacks still say ACKED).

//  Counters of one client. Everything the client dropped is here.
typedef struct {
    uint64_t raised;    //  evr_raise() calls accepted into the queue
    uint64_t sent;      //  events sent (first time)
    uint64_t acked;     //  events acknowledged by a relay
    uint64_t resent;    //  events sent again after a timeout
    uint64_t dropped;   //  events dropped because the queue was full
    uint64_t rejected;  //  events a relay refused (too large, malformed)
    uint64_t queued;    //  events waiting in the queue now
    uint64_t in_flight; //  events sent and not yet acked now
    uint64_t failed;    //  DELIVERED: events no subscriber took (see above)
} evr_client_stats_t;

//  Connect to one or more relays: endpoints is a comma-separated list of
//  ZeroMQ endpoints (the relays' ingest sockets). opts may be NULL.
//  Returns NULL on a bad endpoint or out of memory.
evr_client_t *evr_client_new(const char *endpoints,
                             const evr_client_opts_t *opts);

//  Stop the background thread, drop what is still unacked, free the
//  client, and NULL the pointer. Call evr_client_flush first to wait.
//  With EVR_ACK_NONE, batches already sent but still in ZeroMQ's queue
//  towards a connected relay get at most 1 s to leave.
void evr_client_destroy(evr_client_t **self_p);

//  Create an event named name (1..64 characters). NULL on a bad name.
evr_event_t *evr_event_new(const char *name);

//  Destroy an event that was not raised, and NULL the pointer.
void evr_event_destroy(evr_event_t **self_p);

//  Add an integer param. name NULL = positional. The first param decides
//  whether the payload's params are an object (named) or an array.
//  Returns 0 or -1.
int evr_event_add_int(evr_event_t *self, const char *name, int64_t value);

//  Add a string param (value copied; NULL = JSON null). Returns 0 or -1.
int evr_event_add_str(evr_event_t *self, const char *name, const char *value);

//  Add a string param of len bytes. Returns 0 or -1.
int evr_event_add_strn(evr_event_t *self, const char *name, const char *value,
                       size_t len);

//  Raise the event: takes ownership and NULLs *event_p. Never blocks.
//  Returns 0 when queued (possibly dropping the oldest queued event, which
//  is counted in `dropped`), -1 when the client is stopping or the event is
//  invalid (the event is freed either way).
int evr_raise(evr_client_t *self, evr_event_t **event_p);

//  Raise like evr_raise, and call fn(arg, outcome) exactly once when the
//  event's fate is known (also when this returns -1; see evr_done_fn for
//  which thread calls it). fn may be NULL. Never blocks.
int evr_raise_cb(evr_client_t *self, evr_event_t **event_p, evr_done_fn *fn,
                 void *arg);

//  Wait until every raised event is acknowledged, at most timeout_ms.
//  Returns 0 when all are acked, -1 on timeout.
int evr_client_flush(evr_client_t *self, int timeout_ms);

//  Copy the client's counters into *stats.
void evr_client_stats(evr_client_t *self, evr_client_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif

/*  evr_tr_zmq.c - zmq:push:ENDPOINT and zmq:pub:ENDPOINT targets.

    One ZeroMQ socket per target, connected to ENDPOINT (the subscriber
    binds). ZeroMQ sockets must stay in one thread, so the socket is made
    lazily by the owning worker at its first flush, on the relay's context,
    and closed by the worker too (abort). ZeroMQ connects and reconnects by
    itself; the transport never waits for it.

    PUSH   one frame: the JSON-RPC payload. ZMQ_IMMEDIATE=1, so nothing is
           queued for a peer that is not connected: with no peer (or every
           peer at its high-water mark) a send would block. A top-level
           delivery then waits at the head of the target's queue until the
           socket polls writable (ZMQ_POLLOUT); a delivery for a virtual
           parent fails at once, so FAILOVER and ROUND-ROBIN move the event
           on to the next child instead of stalling behind a dead one.
    PUB    two frames: [event name, payload], so subscribers filter by
           event name prefix (zmq_setsockopt ZMQ_SUBSCRIBE "E_CALL").
           Fire-and-forget: a PUB socket never blocks and silently drops
           what no subscriber is connected for, or what exceeds the
           high-water mark, so every send counts as delivered. Events raised
           before the connection is up (the first ones after subscribe, or
           while the subscriber restarts) are lost: use PUSH, or another
           transport, when loss matters.

    A message counts as delivered once the socket accepted it (zmq_send
    with ZMQ_DONTWAIT succeeded): ZeroMQ confirms nothing end to end.
    Messages accepted but not yet on the wire (up to S_SNDHWM per peer)
    are lost if that peer goes away, and discarded when the socket closes
    (ZMQ_LINGER 0), so shutdown never waits for a peer.

    While its socket is open the target reports itself busy, which keeps
    it on the worker's active list: the worker, the socket's thread, then
    closes it (abort) when the target is orphaned or at shutdown.
*/
#include "evr_transport.h"
#include "evr_auth.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Messages ZeroMQ holds per peer before PUSH blocks (PUB drops): about
//  2 MiB of 200-byte events, enough to ride out a short subscriber pause;
//  the target queue behind it holds the rest, counted.
#define S_SNDHWM 10000

typedef struct {
    void *sock;   //  made by the worker at the first flush; NULL until then
    bool pub;     //  PUB (two frames, never blocks) rather than PUSH
    bool blocked; //  PUSH: the head delivery waits for ZMQ_POLLOUT
    bool failing; //  the socket could not be made (logged once)
    char server_key[41]; //  CURVE: the subscriber's public key ("" = plain)
} s_state_t;

//  Check the spec and prepare the state; the socket is made by the worker.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    const evr_sockspec_t *spec = evr_target_spec(t);
    if (!evr_sockspec_endpoint(spec)) {
        snprintf(err, errlen, "zmq: no endpoint");
        return -1;
    }
    if (!evr_target_opts(t)->zmq_ctx) {
        snprintf(err, errlen, "zmq: no ZeroMQ context");
        return -1;
    }
    s_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->pub = evr_sockspec_zmq_pub(spec) != 0;
    evr_target_set_state(t, st);
    evr_auth_t *auth = evr_target_opts(t)->auth;
    if (auth && evr_auth_endpoint_key(auth, false, evr_sockspec_endpoint(spec),
                                      st->server_key)) {
        snprintf(err, errlen,
                 "zmq: CURVE is on and no certificate in [security] backends "
                 "names endpoint = %s",
                 evr_sockspec_endpoint(spec));
        return -1;
    }
    return 0;
}

//  Close the socket, discarding what it has not sent yet (linger 0).
static void s_close_socket(s_state_t *st)
{
    if (st->sock) {
        zmq_close(st->sock);
        st->sock = NULL;
    }
    st->blocked = false;
}

//  Worker: make and connect the socket. Returns 0 or -1 (logged once).
static int s_connect(evr_target_t *t, s_state_t *st)
{
    const char *endpoint = evr_sockspec_endpoint(evr_target_spec(t));
    void *sock =
        zmq_socket(evr_target_opts(t)->zmq_ctx, st->pub ? ZMQ_PUB : ZMQ_PUSH);
    if (sock) {
        int linger = 0, hwm = S_SNDHWM, immediate = 1, ipv6 = 1;
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        //  IPv6 endpoints too ([::1], names with AAAA records)
        zmq_setsockopt(sock, ZMQ_IPV6, &ipv6, sizeof ipv6);
        if (!st->pub)
            zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
        if ((!st->server_key[0] ||
             evr_auth_client(evr_target_opts(t)->auth, sock, st->server_key) ==
                 0) &&
            zmq_connect(sock, endpoint) == 0) {
            st->sock = sock;
            st->failing = false;
            return 0;
        }
    }
    if (!st->failing)
        zsys_warning("%s: cannot connect: %s", evr_target_socket(t),
                     zmq_strerror(zmq_errno()));
    st->failing = true;
    if (sock)
        zmq_close(sock);
    return -1;
}

//  Hand one payload to the socket without blocking: PUSH one frame, PUB
//  [event, payload]. Returns 0, or -1 with errno (EAGAIN: would block).
static int s_send(s_state_t *st, const evr_msg_t *msg)
{
    if (st->pub) {
        const char *event = msg->event ? msg->event : "";
        if (zmq_send(st->sock, event, strlen(event),
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return -1;
    }
    return zmq_send(st->sock, msg->data, msg->len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

//  Send as much of the queue as the socket takes.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    st->blocked = false;
    if (!st->sock && s_connect(t, st)) {
        evr_target_complete_front(t, evr_target_queued(t), false);
        return;
    }
    evr_delivery_t *d;
    while ((d = evr_target_peek(t, 0))) {
        if (s_send(st, d->msg) == 0) {
            evr_target_complete_front(t, 1, true);
            continue;
        }
        int err = zmq_errno();
        if (err == EINTR)
            continue;
        if (err == EAGAIN && !d->parent) {
            //  PUSH without a ready peer: the head waits, in order
            st->blocked = true;
            return;
        }
        //  a virtual child's delivery cannot wait (the parent moves it
        //  on), or the socket is unusable (context terminated)
        evr_target_complete_front(t, 1, false);
    }
}

//  While blocked, poll the ZeroMQ socket for room (ZMQ_POLLOUT).
static int s_poll_items(evr_target_t *t, zmq_pollitem_t *items, int max)
{
    s_state_t *st = evr_target_state(t);
    if (!st->blocked || !st->sock || max < 1 || !evr_target_queued(t))
        return 0;
    items[0] = (zmq_pollitem_t){st->sock, 0, ZMQ_POLLOUT, 0};
    return 1;
}

//  A peer has room again: send.
static void s_on_poll(evr_target_t *t, zmq_pollitem_t *items, int n,
                      int64_t now_us)
{
    if (n > 0 && (items[0].revents & ZMQ_POLLOUT))
        s_flush(t, now_us);
}

//  An open socket keeps the target on the worker's active list, so the
//  worker (the socket's thread) is the one that closes it, in abort, when
//  the target is orphaned or at shutdown.
static bool s_busy(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    return st && st->sock;
}

//  Worker: nothing is in flight (a send completes at once); close the
//  socket here, in the thread that made it.
static void s_abort(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (st)
        s_close_socket(st);
}

//  Free the state. The socket is normally closed by abort already. It can
//  still be open only if no worker list holds the target any more: the
//  last reference is gone, so no thread uses the socket, and the atomic
//  reference count gave the full memory barrier ZeroMQ asks for when a
//  socket changes threads. At shutdown the relay joins its workers before
//  dropping its targets, and terminates the context only after that, so
//  this zmq_close neither races the worker nor blocks zmq_ctx_term.
static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    s_close_socket(st);
    free(st);
}

const evr_transport_ops_t evr_tr_zmq = {
    .name = "zmq",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
    .poll_items = s_poll_items,
    .on_poll = s_on_poll,
    .busy = s_busy,
    .abort = s_abort,
};

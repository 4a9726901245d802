/*  evr_tr_rabbitmq.c - rabbitmq: targets (OpenSIPS event_rabbitmq, with
    publisher confirms).

    One AMQP connection with channel 1 per target, opened by the delivery
    worker on the first event (never by the core thread). Every event is
    a basic.publish on channel 1: exchange (default ""), the socket's
    routing key, mandatory=1, immediate=0, the JSON-RPC notification as
    body, and fully initialised properties (OpenSIPS #4223): content_type
    application/json, message_id = the event id (docs/OPERATIONS.md: the
    same for every copy and every resend of one event, so consumers can
    de-duplicate; "<event>-<n>" with n counting this target's publishes
    for an event without one), delivery_mode 2 for `persistent` sockets.

    Outcomes come from publisher confirms (confirm.select), never from the
    hand-off: a basic.ack (with `multiple`) makes a delivery delivered, a
    basic.nack failed. A message the broker cannot route comes back as
    basic.return + content header + body BEFORE the broker's basic.ack for
    it; the return is matched to its delivery by the message_id it carries
    (the oldest publish in flight with that id and no return yet: the
    broker handles a channel's publishes in order) and that delivery fails
    when its ack arrives. So a virtual FAILOVER
    moves an event on when the broker did not take it (OpenSIPS #1510).

    Connecting never blocks the worker. librabbitmq 0.11 has blocking calls
    only, so each connect attempt (name lookup, TCP connect with
    amqp_socket_open_noblock, amqp_login with the [rabbitmq] heartbeat,
    channel.open, confirm.select) runs on a short-lived thread of its own
    with ONE deadline of [relay] connect_timeout_ms for the whole sequence
    (plus the name lookup, which getaddrinfo cannot bound). The worker
    polls an eventfd for the end of the attempt and adopts the connection;
    its other targets are served meanwhile. While an attempt runs, a
    virtual child's deliveries wait for it (a FAILOVER does not skip a
    child that is only connecting). Attempts are spaced by exponential
    back-off (EVR_DEFAULT_RECONNECT_MIN_MS doubling to
    EVR_DEFAULT_RECONNECT_MAX_MS; back to the minimum after a confirm, or
    when a lost connection had been up for twice the maximum), so a dead
    broker costs one attempt per back-off period (OpenSIPS #1836).
    Connections are made only while deliveries wait: an idle target does
    not reconnect until its next event.

    Once the channel is in confirm mode, librabbitmq never touches the
    socket again: its writes poll for POLLOUT with no deadline
    (amqp_basic_publish, heartbeats), which could hold the worker forever
    behind a broker that stopped reading (SO_SNDTIMEO cannot help: the
    library keeps the socket non-blocking and re-polls on EAGAIN). Instead
    this file encodes frames with librabbitmq's codec (amqp_encode_method,
    amqp_encode_properties) into its own output buffer, writes it with
    non-blocking send() when poll says POLLOUT, and decodes what it reads
    with amqp_handle_input(). Frames librabbitmq buffered during the
    handshake are drained first (amqp_frames_enqueued/amqp_data_in_buffer).
    Heartbeats are ours too: a heartbeat frame when nothing was sent for
    half the negotiated interval, and the connection is dead when nothing
    arrived for two intervals (OpenSIPS #81).

    Flow: at most S_WINDOW publishes wait for their confirm, in publish
    order with their delivery tags (1, 2, ... per channel after
    confirm.select), and at most S_OUT_HIGH bytes wait to be written; while
    either is full the queue waits. The oldest unconfirmed publish may
    wait S_CONFIRM_TIMEOUT_US; after that the connection counts as stuck.

    Failures: a lost connection (socket error, missed heartbeats, confirm
    timeout, connection.close or channel.close from the broker, e.g. an
    unknown exchange) fails every in-flight delivery (a FAILOVER parent
    moves them on; the broker may still have some: at-least-once) and
    reconnects with back-off. Queued top-level deliveries wait for the new
    connection (OpenSIPS #535 lost them), but while the connection is down
    a virtual child fails its deliveries at once, so FAILOVER and
    ROUND-ROBIN move them on instead of waiting.

    The password never reaches a log line: lines name the target by its
    canonical socket, which hides it (evr_sockspec.c).
*/
#define _GNU_SOURCE
#include "evr_defaults.h"
#include "evr_transport.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

//  Publishes waiting for their confirm, per connection.
#define S_WINDOW 1024
//  How long the oldest publish may wait for its confirm.
#define S_CONFIRM_TIMEOUT_US (10 * 1000000LL)
//  Encoded bytes waiting to be written before the queue waits.
#define S_OUT_HIGH (1024 * 1024)
//  AMQP short strings (exchange, routing key, vhost) hold 255 bytes.
#define S_SHORTSTR 255
//  The channel we publish on.
#define S_CHANNEL 1
//  Room for one encoded method or content header (short strings only).
#define S_ENCODE_ROOM 2048

//  A publish waiting for its confirm.
typedef struct {
    evr_delivery_t d; //  d.tag: delivery tag; d.t_us: when published
    uint64_t n;       //  its number, for a message_id "<event>-<n>"
    bool returned;    //  basic.return seen: its confirm is a failure
    bool done;        //  completed already (a single ack or nack)
} s_flight_t;

//  Where we are in the content that follows a basic.return.
typedef enum {
    S_CONTENT_NONE = 0,
    S_CONTENT_HEADER, //  a basic.return came: its header is next
    S_CONTENT_BODY    //  body frames follow until content_left is 0
} s_content_t;

typedef struct {
    //  From the socket string (borrowed: the target owns its spec).
    const char *host, *user, *password, *vhost, *exchange, *routing_key;
    int port;
    bool persistent;
    //  The connection; conn is NULL while down.
    amqp_connection_state_t conn;
    int fd;
    int heartbeat_s;   //  negotiated, 0 = off
    size_t body_max;   //  largest body frame payload
    uint64_t next_tag; //  delivery tag of the next publish
    uint64_t next_n;   //  message number of the next publish
    int64_t last_sent_us, last_recv_us;
    int64_t connected_us; //  when the connection came up
    //  In flight, in publish order: a ring of S_WINDOW.
    s_flight_t *flight;
    size_t head, count;
    //  Encoded frames not yet written: out[out_off .. out_len).
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    //  The content of a basic.return being read.
    s_content_t content;
    uint64_t content_left;
    bool warned_return; //  one log line per connection for returns
    //  Reconnecting: the attempt in progress, or NULL.
    struct s_job_t *job;
    int64_t reconnect_at_us;
    int backoff_ms;
    char last_error[192]; //  the last reason logged, not to repeat it
    int64_t last_error_us;
} s_state_t;

//  --- helpers -------------------------------------------------------------

//  Log why the target is down, unless the same reason was logged within
//  the last minute (a dead broker would otherwise log every back-off).
static void s_warn(evr_target_t *t, const char *why)
{
    s_state_t *st = evr_target_state(t);
    int64_t now_us = zclock_usecs();
    if (strcmp(st->last_error, why) == 0 &&
        now_us - st->last_error_us < 60 * 1000000LL)
        return;
    snprintf(st->last_error, sizeof st->last_error, "%s", why);
    st->last_error_us = now_us;
    zsys_warning("%s: %s", evr_target_socket(t), why);
}

//  Put a big-endian 16-bit value.
static void s_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

//  Put a big-endian 32-bit value.
static void s_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

//  Put a big-endian 64-bit value.
static void s_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

//  The time left until deadline_us as a timeval, at least 1 ms. Returns -1
//  when the deadline has passed.
static int s_time_left(int64_t deadline_us, struct timeval *tv)
{
    int64_t left = deadline_us - zclock_usecs();
    if (left <= 0)
        return -1;
    if (left < 1000)
        left = 1000;
    tv->tv_sec = (time_t)(left / 1000000);
    tv->tv_usec = (suseconds_t)(left % 1000000);
    return 0;
}

//  Describe a failed RPC reply in why. Returns 0 for a normal reply, -1
//  otherwise.
static int s_reply_error(amqp_rpc_reply_t r, const char *what, char *why,
                         size_t whylen)
{
    switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return 0;
        case AMQP_RESPONSE_NONE:
            snprintf(why, whylen, "%s: no reply", what);
            return -1;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            snprintf(why, whylen, "%s: %s", what,
                     amqp_error_string2(r.library_error));
            return -1;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            break;
    }
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD && r.reply.decoded) {
        amqp_connection_close_t *c = r.reply.decoded;
        snprintf(why, whylen, "%s: broker closed the connection: %u %.*s", what,
                 c->reply_code, (int)c->reply_text.len,
                 (const char *)c->reply_text.bytes);
    } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD && r.reply.decoded) {
        amqp_channel_close_t *c = r.reply.decoded;
        snprintf(why, whylen, "%s: broker closed the channel: %u %.*s", what,
                 c->reply_code, (int)c->reply_text.len,
                 (const char *)c->reply_text.bytes);
    } else
        snprintf(why, whylen, "%s: broker error (method 0x%08x)", what,
                 (unsigned)r.reply.id);
    return -1;
}

//  --- the output buffer ---------------------------------------------------

//  Make room for `need` more bytes at the end of the output buffer.
//  Returns 0 or -1.
static int s_out_reserve(s_state_t *st, size_t need)
{
    if (st->out_off == st->out_len)
        st->out_off = st->out_len = 0;
    else if (st->out_off > st->out_cap / 2) {
        memmove(st->out, st->out + st->out_off, st->out_len - st->out_off);
        st->out_len -= st->out_off;
        st->out_off = 0;
    }
    if (st->out_len + need <= st->out_cap)
        return 0;
    size_t cap = st->out_cap ? st->out_cap : 16384;
    while (cap < st->out_len + need)
        cap *= 2;
    uint8_t *grown = realloc(st->out, cap);
    if (!grown)
        return -1;
    st->out = grown;
    st->out_cap = cap;
    return 0;
}

//  Append one frame. Returns 0 or -1.
static int s_out_frame(s_state_t *st, uint8_t type, uint16_t channel,
                       const void *payload, size_t len)
{
    if (s_out_reserve(st, len + 8))
        return -1;
    uint8_t *p = st->out + st->out_len;
    p[0] = type;
    s_put16(p + 1, channel);
    s_put32(p + 3, (uint32_t)len);
    if (len)
        memcpy(p + 7, payload, len);
    p[7 + len] = AMQP_FRAME_END;
    st->out_len += len + 8;
    return 0;
}

//  Append a method frame (librabbitmq encodes the arguments). Returns 0
//  or -1.
static int s_out_method(s_state_t *st, uint16_t channel,
                        amqp_method_number_t id, void *method)
{
    uint8_t buf[S_ENCODE_ROOM];
    s_put32(buf, id);
    amqp_bytes_t room = {sizeof buf - 4, buf + 4};
    int len = amqp_encode_method(id, method, room);
    if (len < 0)
        return -1;
    return s_out_frame(st, AMQP_FRAME_METHOD, channel, buf, 4 + (size_t)len);
}

//  Write what the output buffer holds without blocking. Returns 0 (all
//  written, or the socket is full: wait for POLLOUT) or -1 (errno).
static int s_write(s_state_t *st, int64_t now_us)
{
    while (st->out_off < st->out_len) {
        ssize_t n =
            send(st->fd, st->out + st->out_off, st->out_len - st->out_off,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            st->out_off += (size_t)n;
            st->last_sent_us = now_us;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n == 0)
            errno = EPIPE;
        return -1;
    }
    st->out_off = st->out_len = 0;
    return 0;
}

//  --- in flight -----------------------------------------------------------

//  The message_id of publish number n: the event id, or "<event>-<n>" for
//  an event without one.
static void s_message_id(char *buf, size_t size, const evr_msg_t *msg,
                         uint64_t n)
{
    if (msg->id && msg->id[0])
        snprintf(buf, size, "%.200s", msg->id);
    else
        snprintf(buf, size, "%.200s-%" PRIu64, msg->event, n);
}

//  The i-th publish in flight (0 = oldest).
static s_flight_t *s_flight(s_state_t *st, size_t i)
{
    return &st->flight[(st->head + i) % S_WINDOW];
}

//  Complete a publish in flight: delivered when the broker confirmed it
//  and did not return it.
static void s_finish(evr_target_t *t, s_flight_t *f, bool ok)
{
    evr_delivery_t d = f->d;
    bool delivered = ok && !f->returned;
    f->done = true;
    f->d.msg = f->d.bundle = NULL;
    evr_target_complete(t, &d, delivered);
}

//  Drop completed publishes off the front of the ring.
static void s_pop_done(s_state_t *st)
{
    while (st->count && s_flight(st, 0)->done) {
        st->head = (st->head + 1) % S_WINDOW;
        st->count--;
    }
}

//  Fail every publish in flight.
static void s_fail_inflight(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    while (st->count) {
        s_flight_t *f = s_flight(st, 0);
        st->head = (st->head + 1) % S_WINDOW;
        st->count--;
        if (!f->done)
            s_finish(t, f, false);
    }
    st->head = 0;
}

//  A basic.ack (ok) or basic.nack: complete the publish with that tag, or
//  with `multiple` every one up to it (tag 0: all).
static void s_confirm(evr_target_t *t, uint64_t tag, bool multiple, bool ok)
{
    s_state_t *st = evr_target_state(t);
    if (multiple) {
        while (st->count) {
            s_flight_t *f = s_flight(st, 0);
            if (tag && f->d.tag > tag)
                break;
            st->head = (st->head + 1) % S_WINDOW;
            st->count--;
            if (!f->done)
                s_finish(t, f, ok);
        }
    } else if (st->count) {
        uint64_t first = s_flight(st, 0)->d.tag;
        if (tag >= first && tag - first < st->count) {
            s_flight_t *f = s_flight(st, (size_t)(tag - first));
            if (!f->done)
                s_finish(t, f, ok);
        }
    }
    s_pop_done(st);
    if (ok)
        st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
}

//  The header of returned content names its message: mark that publish
//  returned, so the ack that follows it counts as a failure. The broker
//  returns in publish order, before the acks: the oldest publish in flight
//  with that message_id and no return yet is the one.
static void s_mark_returned(evr_target_t *t, amqp_bytes_t message_id)
{
    s_state_t *st = evr_target_state(t);
    char expect[S_SHORTSTR + 1];
    for (size_t i = 0; i < st->count; i++) {
        s_flight_t *f = s_flight(st, i);
        if (f->done || f->returned || !f->d.msg)
            continue;
        s_message_id(expect, sizeof expect, f->d.msg, f->n);
        if (strlen(expect) == message_id.len &&
            memcmp(expect, message_id.bytes, message_id.len) == 0) {
            f->returned = true;
            return;
        }
    }
}

//  --- the connection ------------------------------------------------------

//  Close the connection (no outcome is reported here). bye: a last method
//  to send on channel 0 when the output holds no partial frame
//  (connection.close or connection.close-ok), 0 for none.
static void s_disconnect(s_state_t *st, amqp_method_number_t bye)
{
    if (!st->conn)
        return;
    if (bye && st->out_off == st->out_len && st->fd >= 0) {
        amqp_connection_close_t close = {.reply_code = AMQP_REPLY_SUCCESS,
                                         .reply_text =
                                             amqp_cstring_bytes("OK")};
        amqp_connection_close_ok_t close_ok = {0};
        void *method = bye == AMQP_CONNECTION_CLOSE_METHOD ? (void *)&close
                                                           : (void *)&close_ok;
        if (s_out_method(st, 0, bye, method) == 0)
            s_write(st, zclock_usecs());
    }
    amqp_destroy_connection(st->conn);
    st->conn = NULL;
    st->fd = -1;
    st->out_off = st->out_len = 0;
    st->content = S_CONTENT_NONE;
    st->content_left = 0;
}

//  While the connection is down, a virtual child's deliveries fail at
//  once so the parent moves them on; top-level deliveries wait for the
//  reconnect. (A target's deliveries are all top-level or all a child's.)
static void s_fail_waiting_children(evr_target_t *t)
{
    evr_delivery_t *d;
    while ((d = evr_target_peek(t, 0)) && d->parent)
        evr_target_complete_front(t, 1, false);
}

//  Schedule the next connect attempt after the back-off, and double it.
static void s_backoff(s_state_t *st)
{
    st->reconnect_at_us = zclock_usecs() + (int64_t)st->backoff_ms * 1000;
    st->backoff_ms *= 2;
    if (st->backoff_ms > EVR_DEFAULT_RECONNECT_MAX_MS)
        st->backoff_ms = EVR_DEFAULT_RECONNECT_MAX_MS;
}

//  The connection is gone or unusable: log why, close, fail what is in
//  flight, and reconnect after the back-off (from the start when the
//  connection had been up for a while).
static void s_lost(evr_target_t *t, const char *why, amqp_method_number_t bye)
{
    s_state_t *st = evr_target_state(t);
    s_warn(t, why);
    if (zclock_usecs() - st->connected_us >=
        (int64_t)EVR_DEFAULT_RECONNECT_MAX_MS * 2000)
        st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    s_disconnect(st, bye);
    s_fail_inflight(t);
    s_backoff(st);
    s_fail_waiting_children(t);
}

//  The socket error behind a failed read or write, as a reason.
static void s_lost_errno(evr_target_t *t, const char *what)
{
    char why[128];
    snprintf(why, sizeof why, "%s: %s", what, strerror(errno));
    s_lost(t, why, 0);
}

//  --- reading -------------------------------------------------------------

//  Handle one frame from the broker. Returns 0, or -1 when the connection
//  was lost (closed here).
static int s_on_frame(evr_target_t *t, amqp_frame_t *f)
{
    s_state_t *st = evr_target_state(t);
    char why[192];
    if (f->frame_type == AMQP_FRAME_HEADER) {
        if (st->content != S_CONTENT_HEADER)
            return 0;
        amqp_basic_properties_t *p = f->payload.properties.decoded;
        if (p && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
            s_mark_returned(t, p->message_id);
        st->content_left = f->payload.properties.body_size;
        st->content = st->content_left ? S_CONTENT_BODY : S_CONTENT_NONE;
        return 0;
    }
    if (f->frame_type == AMQP_FRAME_BODY) {
        if (st->content != S_CONTENT_BODY)
            return 0;
        uint64_t len = f->payload.body_fragment.len;
        st->content_left -= len < st->content_left ? len : st->content_left;
        if (!st->content_left)
            st->content = S_CONTENT_NONE;
        return 0;
    }
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0; //  heartbeats: receiving anything counts
    void *m = f->payload.method.decoded;
    switch (f->payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *ack = m;
            s_confirm(t, ack->delivery_tag, ack->multiple, true);
            return 0;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *nack = m;
            s_confirm(t, nack->delivery_tag, nack->multiple, false);
            return 0;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            amqp_basic_return_t *ret = m;
            st->content = S_CONTENT_HEADER;
            if (!st->warned_return) {
                st->warned_return = true;
                zsys_warning("%s: broker returned a message: %u %.*s "
                             "(counted failed; logged once per connection)",
                             evr_target_socket(t), ret->reply_code,
                             (int)ret->reply_text.len,
                             (const char *)ret->reply_text.bytes);
            }
            return 0;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            amqp_channel_close_t *c = m;
            snprintf(why, sizeof why, "broker closed the channel: %u %.*s",
                     c->reply_code, (int)c->reply_text.len,
                     (const char *)c->reply_text.bytes);
            //  connection.close (not channel.close-ok): we reconnect
            s_lost(t, why, AMQP_CONNECTION_CLOSE_METHOD);
            return -1;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_connection_close_t *c = m;
            snprintf(why, sizeof why, "broker closed the connection: %u %.*s",
                     c->reply_code, (int)c->reply_text.len,
                     (const char *)c->reply_text.bytes);
            s_lost(t, why, AMQP_CONNECTION_CLOSE_OK_METHOD);
            return -1;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD:
            s_warn(t, "broker blocked the connection (resource alarm)");
            return 0;
        default:
            return 0;
    }
}

//  Read what the socket holds and handle every complete frame. Returns 0,
//  or -1 when the connection was lost.
static int s_read(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    uint8_t buf[16384];
    for (int round = 0; round < 64; round++) {
        ssize_t n = recv(st->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) {
            s_lost(t, "broker closed the connection", 0);
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            s_lost_errno(t, "read");
            return -1;
        }
        st->last_recv_us = now_us;
        size_t off = 0;
        while (off < (size_t)n) {
            amqp_bytes_t in = {(size_t)n - off, buf + off};
            amqp_frame_t f = {0};
            int used = amqp_handle_input(st->conn, in, &f);
            if (used <= 0) {
                char why[128];
                snprintf(why, sizeof why, "bad data from the broker: %s",
                         amqp_error_string2(
                             used < 0 ? used : AMQP_STATUS_BAD_AMQP_DATA));
                s_lost(t, why, 0);
                return -1;
            }
            off += (size_t)used;
            if (f.frame_type && s_on_frame(t, &f))
                return -1;
        }
        if ((size_t)n < sizeof buf)
            break;
    }
    amqp_maybe_release_buffers(st->conn);
    return 0;
}

//  Frames librabbitmq read ahead during the handshake are ours to handle.
//  Returns 0 or -1 (lost).
static int s_drain_library(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    while (amqp_frames_enqueued(st->conn) || amqp_data_in_buffer(st->conn)) {
        struct timeval zero = {0, 0};
        amqp_frame_t f = {0};
        if (amqp_simple_wait_frame_noblock(st->conn, &f, &zero) !=
            AMQP_STATUS_OK)
            break;
        if (s_on_frame(t, &f))
            return -1;
    }
    amqp_maybe_release_buffers(st->conn);
    return 0;
}

//  --- publishing ----------------------------------------------------------

//  Encode one delivery as basic.publish + content header + body frames
//  with message number n. Returns 0 or -1 (out of memory: nothing added).
static int s_encode(s_state_t *st, const evr_delivery_t *d, uint64_t n)
{
    size_t mark = st->out_len - st->out_off;
    char message_id[S_SHORTSTR + 1];
    s_message_id(message_id, sizeof message_id, d->msg, n);
    amqp_basic_publish_t publish = {
        .ticket = 0,
        .exchange = amqp_cstring_bytes(st->exchange),
        .routing_key = amqp_cstring_bytes(st->routing_key),
        .mandatory = 1,
        .immediate = 0};
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props); //  OpenSIPS #4223: no stray fields
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.message_id = amqp_cstring_bytes(message_id);
    if (st->persistent) {
        props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        props.delivery_mode = 2;
    }
    uint8_t header[S_ENCODE_ROOM];
    s_put16(header, AMQP_BASIC_CLASS);
    s_put16(header + 2, 0); //  weight
    s_put64(header + 4, d->msg->len);
    amqp_bytes_t room = {sizeof header - 12, header + 12};
    int plen = amqp_encode_properties(AMQP_BASIC_CLASS, &props, room);
    if (plen < 0 ||
        s_out_method(st, S_CHANNEL, AMQP_BASIC_PUBLISH_METHOD, &publish) ||
        s_out_frame(st, AMQP_FRAME_HEADER, S_CHANNEL, header,
                    12 + (size_t)plen))
        goto undo;
    for (size_t off = 0; off < d->msg->len; off += st->body_max) {
        size_t len = d->msg->len - off;
        if (len > st->body_max)
            len = st->body_max;
        if (s_out_frame(st, AMQP_FRAME_BODY, S_CHANNEL, d->msg->data + off,
                        len))
            goto undo;
    }
    return 0;
undo:
    st->out_len = st->out_off + mark;
    return -1;
}

//  Publish queued deliveries while the window and the output buffer have
//  room, then write. Returns 0, or -1 when the connection was lost.
static int s_publish(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    while (st->count < S_WINDOW && st->out_len - st->out_off < S_OUT_HIGH) {
        evr_delivery_t d;
        if (evr_target_take(t, &d))
            break;
        if (s_encode(st, &d, st->next_n)) {
            evr_target_complete(t, &d, false);
            continue;
        }
        s_flight_t *f = s_flight(st, st->count++);
        d.tag = st->next_tag++;
        d.t_us = now_us;
        *f = (s_flight_t){.d = d, .n = st->next_n++};
    }
    if (s_write(st, now_us)) {
        s_lost_errno(t, "write");
        return -1;
    }
    return 0;
}

//  --- connecting, on a thread of its own -----------------------------------

//  One connect attempt. librabbitmq's handshake only blocks, so it runs on
//  a short-lived thread of its own while the worker goes on with its other
//  targets; the worker polls done_fd and adopts the connection. The
//  worker may let an attempt go (unsubscribe, shutdown) while it runs:
//  whichever side lets go last frees the job.
typedef struct s_job_t {
    char *host, *user, *password, *vhost; //  copies: the target may go
    int port, heartbeat_s, timeout_ms;
    amqp_connection_state_t conn; //  the result, NULL when it failed
    char why[192];                //  why it failed
    int done_fd;                  //  an eventfd, readable once done
    atomic_bool done;             //  the result is there to read
    atomic_int refs;              //  2 while both sides hold it
} s_job_t;

//  Let go of the job; the last side frees it (and a connection nobody
//  adopted).
static void s_job_release(s_job_t **self_p)
{
    s_job_t *self = *self_p;
    *self_p = NULL;
    if (!self ||
        atomic_fetch_sub_explicit(&self->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (self->conn)
        amqp_destroy_connection(self->conn);
    if (self->done_fd >= 0)
        close(self->done_fd);
    free(self->host);
    free(self->user);
    free(self->password);
    free(self->vhost);
    free(self);
}

//  The attempt: connect, log in, open channel 1 and put it in confirm
//  mode, all within timeout_ms (plus the name lookup, which cannot be
//  bounded). Leaves the connection or the reason in the job.
static void s_job_handshake(s_job_t *job)
{
    int64_t deadline_us = zclock_usecs() + (int64_t)job->timeout_ms * 1000;
    char *why = job->why;
    size_t whylen = sizeof job->why;
    snprintf(why, whylen, "connect: timed out");
    struct timeval tv;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = conn ? amqp_tcp_socket_new(conn) : NULL;
    if (!sock) {
        snprintf(why, whylen, "connect: out of memory");
        goto failed;
    }
    if (s_time_left(deadline_us, &tv))
        goto failed;
    int rc = amqp_socket_open_noblock(sock, job->host, job->port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(why, whylen, "connect: %s", amqp_error_string2(rc));
        goto failed;
    }
    if (s_time_left(deadline_us, &tv))
        goto failed;
    amqp_set_handshake_timeout(conn, &tv);
    amqp_rpc_reply_t r = amqp_login(
        conn, job->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, job->heartbeat_s,
        AMQP_SASL_METHOD_PLAIN, job->user, job->password);
    if (s_reply_error(r, "login", why, whylen))
        goto failed;
    if (s_time_left(deadline_us, &tv))
        goto failed;
    amqp_set_rpc_timeout(conn, &tv);
    amqp_channel_open(conn, S_CHANNEL);
    if (s_reply_error(amqp_get_rpc_reply(conn), "channel.open", why, whylen))
        goto failed;
    if (s_time_left(deadline_us, &tv))
        goto failed;
    amqp_set_rpc_timeout(conn, &tv);
    amqp_confirm_select(conn, S_CHANNEL);
    if (s_reply_error(amqp_get_rpc_reply(conn), "confirm.select", why, whylen))
        goto failed;
    job->conn = conn;
    return;

failed:
    if (conn)
        amqp_destroy_connection(conn);
}

//  The attempt's thread: hand-shake, tell the worker, let go.
static void *s_job_run(void *arg)
{
    s_job_t *job = arg;
    s_job_handshake(job);
    atomic_store_explicit(&job->done, true, memory_order_release);
    uint64_t one = 1;
    if (write(job->done_fd, &one, sizeof one) != sizeof one)
        zsys_error("rabbitmq: cannot signal a finished connect");
    s_job_release(&job);
    return NULL;
}

//  Start a connect attempt on its own thread. Returns 0, or -1 (logged,
//  back-off scheduled) when it could not start.
static int s_connect(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    const evr_target_opts_t *opts = evr_target_opts(t);
    s_job_t *job = calloc(1, sizeof *job);
    if (job) {
        job->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        job->host = strdup(st->host);
        job->user = strdup(st->user);
        job->password = strdup(st->password);
        job->vhost = strdup(st->vhost);
        job->port = st->port;
        job->heartbeat_s = opts->amqp_heartbeat_s;
        job->timeout_ms = opts->connect_timeout_ms;
        atomic_init(&job->refs, 2);
    }
    pthread_attr_t attr;
    pthread_t thread;
    if (job && job->done_fd >= 0 && job->host && job->user && job->password &&
        job->vhost && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, s_job_run, job);
        pthread_attr_destroy(&attr);
        if (rc == 0) {
            st->job = job;
            return 0;
        }
    }
    if (job)
        atomic_init(&job->refs, 1);
    s_job_release(&job);
    s_warn(t, "connect: cannot start an attempt (out of resources)");
    s_backoff(st);
    return -1;
}

//  The attempt in progress finished: adopt its connection and publish, or
//  log why it failed and back off. Nothing to do while it still runs.
static void s_connect_done(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    s_job_t *job = st->job;
    if (!atomic_load_explicit(&job->done, memory_order_acquire))
        return;
    st->job = NULL;
    amqp_connection_state_t conn = job->conn;
    job->conn = NULL;
    if (!conn) {
        s_warn(t, job->why);
        s_job_release(&job);
        s_backoff(st);
        s_fail_waiting_children(t);
        return;
    }
    s_job_release(&job);
    int64_t now_us = zclock_usecs();
    st->conn = conn;
    st->fd = amqp_get_sockfd(conn);
    st->heartbeat_s = amqp_get_heartbeat(conn);
    int frame_max = amqp_get_frame_max(conn);
    st->body_max = frame_max > 4096 ? (size_t)frame_max - 8 : 4096 - 8;
    st->next_tag = 1;
    st->last_sent_us = st->last_recv_us = st->connected_us = now_us;
    st->warned_return = false;
    st->last_error[0] = 0;
    zsys_info("%s: connected (heartbeat %d s)", evr_target_socket(t),
              st->heartbeat_s);
    if (s_drain_library(t) == 0)
        s_publish(t, now_us);
}

//  --- transport functions -------------------------------------------------

//  Check the socket's parts and prepare the state; no network I/O.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    const evr_sockspec_t *spec = evr_target_spec(t);
    s_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evr_target_set_state(t, st);
    st->fd = -1;
    st->host = evr_sockspec_host(spec);
    st->port = evr_sockspec_port(spec);
    st->user = evr_sockspec_user(spec);
    st->password = evr_sockspec_password(spec);
    st->vhost = evr_sockspec_vhost(spec);
    st->exchange = evr_sockspec_exchange(spec);
    st->routing_key = evr_sockspec_routing_key(spec);
    st->persistent = evr_sockspec_persistent(spec) != 0;
    if (!st->host || !*st->host || !st->user || !st->password || !st->vhost ||
        !st->exchange || !st->routing_key) {
        snprintf(err, errlen, "rabbitmq: incomplete socket");
        return -1;
    }
    if (st->port <= 0 || st->port > 65535) {
        snprintf(err, errlen, "rabbitmq: bad port %d", st->port);
        return -1;
    }
    if (strlen(st->exchange) > S_SHORTSTR ||
        strlen(st->routing_key) > S_SHORTSTR ||
        strlen(st->vhost) > S_SHORTSTR) {
        snprintf(err, errlen,
                 "rabbitmq: exchange, routing key and vhost are limited to "
                 "%d bytes",
                 S_SHORTSTR);
        return -1;
    }
    st->flight = calloc(S_WINDOW, sizeof *st->flight);
    if (!st->flight) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    st->next_n = 1;
    return 0;
}

//  Free the state (abort already completed what was in flight).
static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    s_job_release(&st->job);
    s_disconnect(st, AMQP_CONNECTION_CLOSE_METHOD);
    for (size_t i = 0; st->flight && i < st->count; i++) {
        s_flight_t *f = s_flight(st, i);
        if (!f->done)
            evr_delivery_forget(&f->d);
    }
    free(st->flight);
    free(st->out);
    free(st);
}

//  Connect when due, then publish what the queue holds.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (!st->conn) {
        //  a child's deliveries wait for an attempt in progress, and fail
        //  at once while the target backs off
        if (!st->job && (now_us < st->reconnect_at_us || s_connect(t)))
            s_fail_waiting_children(t);
        return;
    }
    s_publish(t, now_us);
}

//  Watch the connect attempt in progress, or the socket: always for
//  input, for output while frames wait.
static int s_poll_items(evr_target_t *t, zmq_pollitem_t *items, int max)
{
    s_state_t *st = evr_target_state(t);
    if (max < 1)
        return 0;
    if (st->job) {
        items[0] = (zmq_pollitem_t){NULL, st->job->done_fd, ZMQ_POLLIN, 0};
        return 1;
    }
    if (!st->conn)
        return 0;
    short events = ZMQ_POLLIN;
    if (st->out_off < st->out_len)
        events |= ZMQ_POLLOUT;
    items[0] = (zmq_pollitem_t){NULL, st->fd, events, 0};
    return 1;
}

//  The connect attempt finished, or the socket is readable or writable:
//  read confirms, write frames.
static void s_on_poll(evr_target_t *t, zmq_pollitem_t *items, int n,
                      int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (n < 1)
        return;
    if (st->job) {
        uint64_t count;
        if (read(st->job->done_fd, &count, sizeof count) < 0 && errno != EAGAIN)
            zsys_error("rabbitmq: eventfd: %s", strerror(errno));
        s_connect_done(t);
        return;
    }
    if (!st->conn)
        return;
    short revents = items[0].revents;
    if ((revents & ZMQ_POLLOUT) && s_write(st, now_us)) {
        s_lost_errno(t, "write");
        return;
    }
    if (revents & (ZMQ_POLLIN | ZMQ_POLLERR))
        s_read(t, now_us);
}

//  The next deadline: a reconnect while deliveries wait, else the oldest
//  confirm, the next heartbeat to send, the broker's heartbeat due.
static int64_t s_next_timer(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st->conn)
        return !st->job && evr_target_queued(t) ? st->reconnect_at_us
                                                : INT64_MAX;
    int64_t next = INT64_MAX;
    if (st->count)
        next = s_flight(st, 0)->d.t_us + S_CONFIRM_TIMEOUT_US;
    if (st->heartbeat_s > 0) {
        int64_t hb_us = (int64_t)st->heartbeat_s * 1000000;
        if (st->last_sent_us + hb_us / 2 < next)
            next = st->last_sent_us + hb_us / 2;
        if (st->last_recv_us + 2 * hb_us < next)
            next = st->last_recv_us + 2 * hb_us;
    }
    return next;
}

//  Reconnect when due; detect stuck confirms and a silent broker; send a
//  heartbeat when idle.
static void s_on_timer(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (!st->conn) {
        if (!st->job && evr_target_queued(t) && now_us >= st->reconnect_at_us &&
            s_connect(t))
            s_fail_waiting_children(t);
        return;
    }
    if (st->count && now_us - s_flight(st, 0)->d.t_us >= S_CONFIRM_TIMEOUT_US) {
        s_lost(t, "no publisher confirm within 10 s",
               AMQP_CONNECTION_CLOSE_METHOD);
        return;
    }
    if (st->heartbeat_s <= 0)
        return;
    int64_t hb_us = (int64_t)st->heartbeat_s * 1000000;
    if (now_us - st->last_recv_us >= 2 * hb_us) {
        s_lost(t, "missed heartbeats: broker silent", 0);
        return;
    }
    if (now_us - st->last_sent_us >= hb_us / 2) {
        //  counts as sent now even while the socket is full: no busy loop
        st->last_sent_us = now_us;
        if (s_out_frame(st, AMQP_FRAME_HEARTBEAT, 0, NULL, 0) == 0 &&
            s_write(st, now_us))
            s_lost_errno(t, "write");
    }
}

//  Needs the reactor while connecting or connected (heartbeats,
//  confirms).
static bool s_busy(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    return st->conn != NULL || st->count > 0 || st->job != NULL;
}

//  Shutdown or unsubscribed: fail what is in flight and close.
static void s_abort(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    s_job_release(&st->job);
    s_disconnect(st, AMQP_CONNECTION_CLOSE_METHOD);
    s_fail_inflight(t);
    st->reconnect_at_us = 0;
    st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
}

const evr_transport_ops_t evr_tr_rabbitmq = {
    .name = "rabbitmq",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
    .poll_items = s_poll_items,
    .on_poll = s_on_poll,
    .next_timer = s_next_timer,
    .on_timer = s_on_timer,
    .busy = s_busy,
    .abort = s_abort,
};

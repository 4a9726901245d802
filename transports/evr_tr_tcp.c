/*  evr_tr_tcp.c - tcp:HOST:PORT[/METHOD] targets (OpenSIPS event_stream).

    One persistent TCP connection per target, driven by the worker's
    reactor and never blocking it:

    Connection  The host is resolved once, when the target is opened
                (numeric or name, IPv4 or IPv6). The worker connects with a
                non-blocking connect(); POLLOUT plus SO_ERROR tells the
                outcome, a timer bounds it (connect_timeout_ms). TCP_NODELAY
                is set: every write is a complete batch of requests. On a
                failed connect, a protocol error or a lost connection the
                socket is closed, whatever is in flight fails, and the next
                connect waits for a back-off that doubles from
                EVR_DEFAULT_RECONNECT_MIN_MS to EVR_DEFAULT_RECONNECT_MAX_MS
                (reset by a successful connect). A connection is only made
                while deliveries wait.

    While down  Deliveries stay QUEUED (the core bounds the queue) and go
                out once connected; a server started late still gets them.
                Deliveries a virtual parent gave us are failed instead as
                soon as the connection is known to be down (a connect failed
                or the connection was lost), so FAILOVER and ROUND-ROBIN
                move them on to another child rather than wait.

    Payload     The relay encodes each event once as a plain JSON-RPC
                notification; evr_payload_jsonrpc_rewrite turns it into
                event_stream's bytes: method = the socket's METHOD or the
                event name, [tcp] event_param as the first entry of params,
                and in reliable mode a per-connection id (1, 2, ...) as the
                first key. Objects go back to back with no delimiter, a
                batch per writev (sendmsg); a partial write keeps the rest
                of the last object in an output buffer and waits for
                POLLOUT, so no object is ever torn.

    Outcomes    Non-reliable ([tcp] reliable_mode off): a delivery counts as
                delivered once fully written; whatever the peer sends is
                read and thrown away. Reliable: each written request waits
                in flight, in a ring indexed by its id, until a reply with
                that id arrives (an `error` member = failure, else success;
                replies may come in any order) or [tcp] timeout passes
                (failure). Replies are back-to-back JSON objects, parsed
                with jansson (JSON_DISABLE_EOF_CHECK reports where each one
                ends) from an input buffer bounded to S_INPUT_MAX bytes.
                Replies with unknown ids (late, never sent) are ignored and
                counted. At most S_INFLIGHT_MAX requests wait at once, so a
                peer that never answers cannot grow memory: sending pauses
                until replies or timeouts free room.

    Abort       (shutdown, unsubscribed) closes the socket, fails every
                in-flight request and stops reconnecting for good.
*/
#define _GNU_SOURCE
#include "evr_transport.h"

#include "evr_defaults.h"
#include "evr_payload.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

//  Requests per write: enough to fill a socket buffer with typical events
//  in one system call, well under IOV_MAX.
#define S_BATCH_MAX 64

//  Reliable mode: requests waiting for a reply at once (a power of two:
//  the ring is indexed by id).
#define S_INFLIGHT_MAX 1024

//  Reliable mode: the most bytes of replies buffered before one of them is
//  complete; a peer sending more is broken (or hostile).
#define S_INPUT_MAX (1024 * 1024)

//  Bytes read per recv() and recv() calls per readable event (so one
//  chatty peer cannot hold the worker).
#define S_READ_CHUNK 16384
#define S_READS_PER_POLL 16

typedef enum { S_DOWN = 0, S_CONNECTING, S_UP } s_conn_t;

typedef struct {
    //  Fixed at open.
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool reliable;
    bool rewrite;             //  the payload needs id, method or event_param
    evr_jsonrpc_opts_t jopts; //  method, event_param (id set per request)
    int64_t timeout_us;
    int64_t connect_timeout_us;
    //  The connection.
    int fd;
    s_conn_t conn;
    bool blocked; //  the last write would block: wait for POLLOUT
    bool failing; //  down after a failure (connect or connection lost)
    bool aborted; //  for good: no more connects
    int64_t connect_deadline_us;
    int64_t retry_at_us; //  down: no connect before this
    int backoff_ms;      //  the next back-off
    //  Output: the unsent rest of an object begun, and (non-reliable) its
    //  delivery, completed when the last byte is written.
    evr_buf_t out;
    size_t out_off;
    evr_delivery_t partial;
    bool has_partial;
    evr_buf_t scratch; //  the batch being written
    struct iovec iov[S_BATCH_MAX];
    //  Reliable mode: ids [first_id, next_id) own ring slots; a slot with
    //  msg == NULL was answered or timed out.
    evr_delivery_t *ring;
    uint64_t first_id, next_id;
    size_t inflight;
    evr_buf_t in; //  replies received, not parsed yet
    uint64_t unknown_replies;
} s_state_t;

//  The bit mask of a ring slot index.
#define S_SLOT(id) ((size_t)((id) & (S_INFLIGHT_MAX - 1)))

//  --------------------------------------------------------------------------
//  Core thread: validate the socket, resolve it, take the options. No
//  connection yet: the worker makes it when there is something to send.

static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    const evr_target_opts_t *opts = evr_target_opts(t);
    s_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->fd = -1;
    st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    evr_target_set_state(t, st);
    if (evr_target_resolve(evr_target_spec(t), SOCK_STREAM, &st->addr,
                           &st->addrlen, err, errlen))
        return -1;
    st->reliable = opts->tcp_reliable;
    st->jopts.method = evr_sockspec_method(evr_target_spec(t));
    st->jopts.event_param = opts->tcp_event_param;
    st->rewrite = st->reliable || st->jopts.method || st->jopts.event_param;
    st->timeout_us = (int64_t)opts->tcp_timeout_ms * 1000;
    st->connect_timeout_us = (int64_t)opts->connect_timeout_ms * 1000;
    if (st->reliable &&
        !(st->ring = calloc(S_INFLIGHT_MAX, sizeof *st->ring))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->first_id = st->next_id = 1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Last reference gone: free everything. Deliveries still held (only when
//  the worker never aborted the target) lose their references uncounted.

static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    if (st->has_partial) {
        evr_delivery_forget(&st->partial);
    }
    if (st->ring)
        for (uint64_t id = st->first_id; id < st->next_id; id++) {
            evr_delivery_t *d = &st->ring[S_SLOT(id)];
            if (d->msg)
                evr_delivery_forget(d);
        }
    free(st->ring);
    evr_buf_free(&st->out);
    evr_buf_free(&st->scratch);
    evr_buf_free(&st->in);
    free(st);
}

//  --------------------------------------------------------------------------
//  Reliable mode: move first_id past answered slots, so it names the oldest
//  request still waiting (the earliest deadline).

static void s_advance(s_state_t *st)
{
    while (st->first_id < st->next_id && !st->ring[S_SLOT(st->first_id)].msg)
        st->first_id++;
}

//  --------------------------------------------------------------------------
//  Reliable mode: take request `id` out of the ring into *d. Returns 0, or
//  -1 when no request with that id is waiting.

static int s_take_inflight(s_state_t *st, uint64_t id, evr_delivery_t *d)
{
    if (id < st->first_id || id >= st->next_id)
        return -1;
    evr_delivery_t *slot = &st->ring[S_SLOT(id)];
    if (!slot->msg)
        return -1;
    *d = *slot;
    slot->msg = NULL;
    st->inflight--;
    s_advance(st);
    return 0;
}

//  --------------------------------------------------------------------------
//  Fail every delivery of this connection: the object being written and
//  every request waiting for a reply. Ids start over on the next one.

static void s_fail_inflight(evr_target_t *t, s_state_t *st)
{
    if (st->has_partial) {
        evr_delivery_t d = st->partial;
        st->has_partial = false;
        evr_target_complete(t, &d, false);
    }
    uint64_t last = st->next_id;
    for (uint64_t id = st->first_id; st->ring && id < last; id++) {
        evr_delivery_t d;
        if (s_take_inflight(st, id, &d) == 0)
            evr_target_complete(t, &d, false);
    }
    st->inflight = 0;
    st->first_id = st->next_id = 1;
}

//  --------------------------------------------------------------------------
//  A virtual child whose connection is down hands its queued deliveries
//  back (failed), so the parent's policy moves them on instead of letting
//  them wait. A target's deliveries are either all a parent's or all
//  top-level; top-level ones keep waiting.

static void s_fail_children(evr_target_t *t)
{
    size_t n = evr_target_queued(t);
    while (n-- > 0) {
        evr_delivery_t *d = evr_target_peek(t, 0);
        if (!d || !d->parent)
            return;
        evr_target_complete_front(t, 1, false);
    }
}

//  --------------------------------------------------------------------------
//  Close the socket and drop the buffered bytes; in-flight deliveries fail.

static void s_disconnect(evr_target_t *t, s_state_t *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
    st->conn = S_DOWN;
    st->blocked = false;
    evr_buf_reset(&st->out);
    st->out_off = 0;
    evr_buf_reset(&st->in);
    s_fail_inflight(t, st);
}

//  --------------------------------------------------------------------------
//  The connection failed (connect error or timeout, lost, protocol error):
//  close, fail what is in flight, schedule the next connect with back-off.
//  Logged once per outage, not per attempt.

static void s_down(evr_target_t *t, int64_t now_us, const char *what, int err)
{
    s_state_t *st = evr_target_state(t);
    bool was_up = st->conn == S_UP;
    s_disconnect(t, st);
    if (was_up || !st->failing)
        zsys_warning("tcp %s: %s%s%s; will reconnect with back-off",
                     evr_target_socket(t), what, err ? ": " : "",
                     err ? strerror(err) : "");
    st->failing = true;
    st->retry_at_us = now_us + (int64_t)st->backoff_ms * 1000;
    st->backoff_ms = st->backoff_ms * 2 > EVR_DEFAULT_RECONNECT_MAX_MS
                         ? EVR_DEFAULT_RECONNECT_MAX_MS
                         : st->backoff_ms * 2;
    s_fail_children(t);
}

//  --------------------------------------------------------------------------
//  Whether a send/recv error means "try again later" rather than a dead
//  connection.

static bool s_would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK;
}

//  --------------------------------------------------------------------------
//  Render up to k queued deliveries into st->iov: the relay's payload as it
//  is, or rewritten (id, method, event_param) into st->scratch. Returns how
//  many are ready; a payload that cannot be rewritten (never produced by
//  the relay) fails when it is first in line, else ends the batch.

static size_t s_render(evr_target_t *t, s_state_t *st, size_t k)
{
    size_t offsets[S_BATCH_MAX];
    evr_buf_reset(&st->scratch);
    for (size_t i = 0; i < k; i++) {
        const evr_msg_t *msg = evr_target_peek(t, i)->msg;
        int rc = msg->len ? 0 : -1;
        if (rc == 0 && st->rewrite) {
            evr_jsonrpc_opts_t opts = st->jopts;
            opts.id = st->reliable ? st->next_id + i : 0;
            offsets[i] = st->scratch.len;
            rc = evr_payload_jsonrpc_rewrite(&st->scratch, msg->data, msg->len,
                                             msg->event, &opts);
            st->iov[i].iov_len = st->scratch.len - offsets[i];
        } else if (rc == 0) {
            st->iov[i].iov_base = (void *)msg->data;
            st->iov[i].iov_len = msg->len;
        }
        if (rc) {
            if (i == 0) {
                zsys_error("tcp %s: cannot encode an event for event_stream",
                           evr_target_socket(t));
                evr_target_complete_front(t, 1, false);
            }
            k = i;
            break;
        }
    }
    if (st->rewrite)
        for (size_t i = 0; i < k; i++)
            st->iov[i].iov_base = st->scratch.data + offsets[i];
    return k;
}

//  --------------------------------------------------------------------------
//  Account for `sent` bytes of the k rendered deliveries: each begun one
//  leaves the queue (reliable: into the ring with its id and deadline;
//  non-reliable: delivered once whole). The rest of a torn object goes to
//  st->out. Returns 0, or -1 when the connection had to be dropped.

static int s_commit(evr_target_t *t, s_state_t *st, size_t k, size_t sent,
                    int64_t now_us)
{
    for (size_t i = 0; i < k && sent > 0; i++) {
        size_t len = st->iov[i].iov_len;
        const char *bytes = st->iov[i].iov_base;
        evr_delivery_t d;
        evr_target_take(t, &d);
        if (len > sent &&
            (evr_buf_append(&st->out, bytes + sent, len - sent))) {
            //  out of memory with a torn object on the wire: start over
            evr_target_complete(t, &d, false);
            s_down(t, now_us, "out of memory", ENOMEM);
            return -1;
        }
        if (st->reliable) {
            d.tag = st->next_id++;
            d.t_us = now_us + st->timeout_us;
            st->ring[S_SLOT(d.tag)] = d;
            st->inflight++;
        }
        if (len > sent) {
            st->out_off = 0;
            if (!st->reliable) {
                st->partial = d;
                st->has_partial = true;
            }
            st->blocked = true;
            return 0;
        }
        sent -= len;
        if (!st->reliable)
            evr_target_complete(t, &d, true);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Write the rest of a torn object. Returns 0 when it is all out, 1 when
//  the socket is full, -1 when the connection was dropped.

static int s_write_rest(evr_target_t *t, s_state_t *st, int64_t now_us)
{
    while (st->out_off < st->out.len) {
        ssize_t n =
            send(st->fd, st->out.data + st->out_off, st->out.len - st->out_off,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && s_would_block(errno)) {
            st->blocked = true;
            return 1;
        }
        if (n < 0) {
            s_down(t, now_us, "write", errno);
            return -1;
        }
        st->out_off += (size_t)n;
    }
    evr_buf_reset(&st->out);
    st->out_off = 0;
    if (st->has_partial) {
        evr_delivery_t d = st->partial;
        st->has_partial = false;
        evr_target_complete(t, &d, true);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Write what the queue holds, batch by batch, until it is empty, the
//  socket is full, or (reliable) the in-flight limit is reached.

static void s_write(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (st->conn != S_UP || st->blocked || s_write_rest(t, st, now_us))
        return;
    while (st->conn == S_UP && !st->blocked) {
        size_t k = evr_target_queued(t);
        if (k > S_BATCH_MAX)
            k = S_BATCH_MAX;
        if (st->reliable) {
            size_t room = S_INFLIGHT_MAX - (size_t)(st->next_id - st->first_id);
            if (k > room)
                k = room;
        }
        if (k == 0)
            return;
        size_t n = s_render(t, st, k);
        if (n == 0)
            continue;
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += st->iov[i].iov_len;
        struct msghdr mh = {.msg_iov = st->iov, .msg_iovlen = n};
        ssize_t sent = sendmsg(st->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && s_would_block(errno)) {
            st->blocked = true;
            return;
        }
        if (sent < 0) {
            s_down(t, now_us, "write", errno);
            return;
        }
        if (s_commit(t, st, n, (size_t)sent, now_us))
            return;
        if ((size_t)sent < total)
            st->blocked = true;
    }
}

//  --------------------------------------------------------------------------
//  The connect completed: reset the back-off, number requests from 1, and
//  send what waits.

static void s_connected(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (st->failing)
        zsys_info("tcp %s: connected", evr_target_socket(t));
    st->conn = S_UP;
    st->failing = false;
    st->blocked = false;
    st->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    st->first_id = st->next_id = 1;
    s_write(t, now_us);
}

//  --------------------------------------------------------------------------
//  Start a non-blocking connect.

static void s_connect(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    int fd = socket(st->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        s_down(t, now_us, "socket", errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    st->fd = fd;
    st->conn = S_CONNECTING;
    st->connect_deadline_us = now_us + st->connect_timeout_us;
    if (connect(fd, (struct sockaddr *)&st->addr, st->addrlen) == 0)
        s_connected(t, now_us);
    else if (errno != EINPROGRESS && errno != EINTR)
        s_down(t, now_us, "connect", errno);
}

//  --------------------------------------------------------------------------
//  Reliable mode: one reply object. A waiting request with its id fails
//  when the reply has an `error` member, else succeeds; other ids (late,
//  never sent, not a number) are counted and ignored.

static void s_on_reply(evr_target_t *t, s_state_t *st, json_t *reply)
{
    json_t *id = json_object_get(reply, "id");
    evr_delivery_t d;
    if (!json_is_integer(id) || json_integer_value(id) < 1 ||
        s_take_inflight(st, (uint64_t)json_integer_value(id), &d)) {
        if (st->unknown_replies++ == 0)
            zsys_warning("tcp %s: ignoring a reply with an unknown id",
                         evr_target_socket(t));
        return;
    }
    evr_target_complete(t, &d, json_object_get(reply, "error") == NULL);
}

//  --------------------------------------------------------------------------
//  Reliable mode: consume every complete reply in the input buffer. A
//  JSON-RPC batch (an array) counts as its objects. Returns 0, or -1 when
//  the peer broke the protocol (the connection was dropped).

static int s_parse(evr_target_t *t, s_state_t *st, int64_t now_us)
{
    size_t off = 0;
    while (true) {
        while (off < st->in.len &&
               (st->in.data[off] == ' ' || st->in.data[off] == '\n' ||
                st->in.data[off] == '\r' || st->in.data[off] == '\t'))
            off++;
        size_t avail = st->in.len - off;
        if (avail == 0)
            break;
        char c = st->in.data[off];
        json_error_t jerr;
        json_t *reply = NULL;
        if (c == '{' || c == '[')
            reply = json_loadb(st->in.data + off, avail, JSON_DISABLE_EOF_CHECK,
                               &jerr);
        if (!reply && (c == '{' || c == '[') &&
            (json_error_code(&jerr) == json_error_premature_end_of_input ||
             (size_t)jerr.position + 4 > avail))
            break; //  incomplete (a truncated token or UTF-8 sequence)
        if (!reply || jerr.position <= 0) {
            json_decref(reply);
            s_down(t, now_us, "malformed reply", EPROTO);
            return -1;
        }
        off += (size_t)jerr.position;
        if (json_is_array(reply)) {
            size_t i;
            json_t *item;
            json_array_foreach(reply, i, item) s_on_reply(t, st, item);
        } else
            s_on_reply(t, st, reply);
        json_decref(reply);
    }
    if (off) {
        memmove(st->in.data, st->in.data + off, st->in.len - off);
        st->in.len -= off;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Readable: take what the peer sent (replies in reliable mode, ignored
//  otherwise); end of stream or an error means the connection is lost.

static void s_read(evr_target_t *t, s_state_t *st, int64_t now_us)
{
    char chunk[S_READ_CHUNK];
    for (int round = 0; round < S_READS_PER_POLL; round++) {
        ssize_t n = recv(st->fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && s_would_block(errno))
            return;
        if (n <= 0) {
            s_down(t, now_us, n == 0 ? "closed by peer" : "read",
                   n == 0 ? 0 : errno);
            return;
        }
        if (st->reliable) {
            if (st->in.len + (size_t)n > S_INPUT_MAX) {
                s_down(t, now_us, "reply too large", EMSGSIZE);
                return;
            }
            if (evr_buf_append(&st->in, chunk, (size_t)n)) {
                s_down(t, now_us, "out of memory", ENOMEM);
                return;
            }
            if (s_parse(t, st, now_us))
                return;
        }
        if ((size_t)n < sizeof chunk)
            return;
    }
}

//  --------------------------------------------------------------------------
//  Worker: connect when the back-off allows (else hand a virtual parent's
//  deliveries back), and write what the queue holds.

static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (st->aborted) {
        evr_target_complete_front(t, evr_target_queued(t), false);
        return;
    }
    if (st->conn == S_DOWN) {
        if (now_us >= st->retry_at_us)
            s_connect(t, now_us);
        else if (st->failing)
            s_fail_children(t);
    }
    if (st->conn == S_UP)
        s_write(t, now_us);
}

//  --------------------------------------------------------------------------
//  Worker: the socket, for the connect outcome (POLLOUT), for replies and
//  the peer closing (POLLIN, always while connected) and for room to write
//  while blocked (POLLOUT).

static int s_poll_items(evr_target_t *t, zmq_pollitem_t *items, int max)
{
    s_state_t *st = evr_target_state(t);
    if (st->fd < 0 || max < 1)
        return 0;
    short events = st->conn == S_CONNECTING ? ZMQ_POLLOUT : ZMQ_POLLIN;
    if (st->conn == S_UP && st->blocked)
        events |= ZMQ_POLLOUT;
    items[0] = (zmq_pollitem_t){NULL, st->fd, events, 0};
    return 1;
}

//  --------------------------------------------------------------------------
//  Worker: the socket is ready: finish a connect, read, write on.

static void s_on_poll(evr_target_t *t, zmq_pollitem_t *items, int n,
                      int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (n < 1 || st->fd < 0 || items[0].fd != st->fd)
        return;
    short revents = items[0].revents;
    if (st->conn == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0 && (revents & ZMQ_POLLOUT))
            s_connected(t, now_us);
        else if (err != 0 || (revents & ZMQ_POLLERR))
            s_down(t, now_us, "connect", err ? err : ECONNREFUSED);
        return;
    }
    if (st->conn != S_UP)
        return;
    if (revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        s_read(t, st, now_us);
        if (st->conn != S_UP)
            return;
    }
    if (revents & ZMQ_POLLOUT) {
        st->blocked = false;
        s_write(t, now_us);
    }
}

//  --------------------------------------------------------------------------
//  Worker: the next deadline: the connect timeout, the end of the back-off
//  while deliveries wait, the oldest request's reply timeout.

static int64_t s_next_timer(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    int64_t next = INT64_MAX;
    if (st->conn == S_CONNECTING)
        next = st->connect_deadline_us;
    else if (st->conn == S_DOWN && !st->aborted && evr_target_queued(t))
        next = st->retry_at_us;
    if (st->inflight) {
        int64_t due = st->ring[S_SLOT(st->first_id)].t_us;
        if (due < next)
            next = due;
    }
    return next;
}

//  --------------------------------------------------------------------------
//  Worker: a deadline passed: give up a connect, reconnect after the
//  back-off, fail requests whose reply is overdue (the connection stays:
//  a late reply is ignored).

static void s_on_timer(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (st->conn == S_CONNECTING && now_us >= st->connect_deadline_us)
        s_down(t, now_us, "connect", ETIMEDOUT);
    if (st->conn == S_DOWN && !st->aborted && evr_target_queued(t) &&
        now_us >= st->retry_at_us)
        s_connect(t, now_us);
    while (st->inflight) {
        evr_delivery_t d;
        if (st->ring[S_SLOT(st->first_id)].t_us > now_us ||
            s_take_inflight(st, st->first_id, &d))
            break;
        evr_target_complete(t, &d, false);
    }
}

//  --------------------------------------------------------------------------
//  Worker: the target needs the reactor while it has a connection (to see
//  it close) or one under way, or deliveries in flight.

static bool s_busy(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    return st->conn != S_DOWN || st->inflight || st->has_partial;
}

//  --------------------------------------------------------------------------
//  Worker, shutdown or unsubscribed: close, fail what is in flight, and
//  never connect again.

static void s_abort(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    st->aborted = true;
    s_disconnect(t, st);
}

const evr_transport_ops_t evr_tr_tcp = {
    .name = "tcp",
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

/*  evr_tr_datagram.c - udp: and unix: targets (OpenSIPS event_datagram).

    One connected, non-blocking socket per target: a connected UDP socket
    learns about ICMP port-unreachable (ECONNREFUSED on a later send), so a
    dead subscriber shows as failures instead of silent loss (and FAILOVER
    can act on it); a connected unix socket lets poll() tell when the
    receiver's queue has room again, and is reconnected when the listener
    comes back. Writes go out in batches with sendmmsg(). A datagram counts
    as delivered once the kernel took it.
*/
#define _GNU_SOURCE
#include "evr_transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BATCH_MAX 64

typedef struct {
    int fd;
    bool is_unix;
    bool connected;
    bool blocked; //  the last send would block: wait for POLLOUT
    struct sockaddr_storage addr;
    socklen_t addrlen;
} s_state_t;

//  Open the socket (udp connects now, unix lazily).
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    const evr_sockspec_t *spec = evr_target_spec(t);
    s_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->fd = -1;
    evr_target_set_state(t, st);
    st->is_unix = evr_sockspec_transport(spec) == EVR_TRANSPORT_UNIX;
    if (!st->is_unix) {
        if (evr_target_resolve(spec, SOCK_DGRAM, &st->addr, &st->addrlen, err,
                               errlen))
            return -1;
    } else {
        struct sockaddr_un *sun = (struct sockaddr_un *)&st->addr;
        sun->sun_family = AF_UNIX;
        const char *path = evr_sockspec_path(spec);
        if (strlen(path) >= sizeof sun->sun_path) {
            snprintf(err, errlen, "unix path too long");
            return -1;
        }
        strcpy(sun->sun_path, path);
        st->addrlen = sizeof(struct sockaddr_un);
    }
    st->fd = socket(st->addr.ss_family,
                    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (st->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int sndbuf = evr_target_opts(t)->sndbuf;
    if (sndbuf > 0)
        setsockopt(st->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (!st->is_unix) {
        if (connect(st->fd, (struct sockaddr *)&st->addr, st->addrlen)) {
            snprintf(err, errlen, "connect: %s", strerror(errno));
            return -1;
        }
        st->connected = true;
    }
    return 0;
}

//  Free the state.
static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

//  Whether a send error means "this destination is gone" (count and move
//  on) rather than "try again later".
static bool s_hard_error(int err)
{
    return err != EAGAIN && err != EWOULDBLOCK && err != EINTR &&
           err != ENOBUFS;
}

//  Send as much of the queue as the socket takes.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    struct mmsghdr mm[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    st->blocked = false;
    while (evr_target_queued(t)) {
        if (!st->connected) {
            if (connect(st->fd, (struct sockaddr *)&st->addr, st->addrlen)) {
                evr_target_complete_front(t, 1, false);
                continue;
            }
            st->connected = true;
        }
        size_t n = evr_target_queued(t);
        if (n > BATCH_MAX)
            n = BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            evr_msg_t *msg = evr_target_peek(t, i)->msg;
            iov[i].iov_base = msg->data;
            iov[i].iov_len = msg->len;
            memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(st->fd, mm, (unsigned)n, MSG_DONTWAIT);
        if (sent > 0) {
            evr_target_complete_front(t, (size_t)sent, true);
            continue;
        }
        if (errno == EINTR)
            continue;
        if (!s_hard_error(errno)) {
            st->blocked = true;
            return;
        }
        //  The first message was refused: a closed port or a vanished
        //  unix listener. It failed; unix sockets reconnect next time.
        if (st->is_unix)
            st->connected = false;
        evr_target_complete_front(t, 1, false);
    }
}

//  Wait for POLLOUT while a send would block.
static int s_poll_items(evr_target_t *t, zmq_pollitem_t *items, int max)
{
    s_state_t *st = evr_target_state(t);
    if (!st->blocked || max < 1 || !evr_target_queued(t))
        return 0;
    items[0] = (zmq_pollitem_t){NULL, st->fd, ZMQ_POLLOUT, 0};
    return 1;
}

//  Writable again: send.
static void s_on_poll(evr_target_t *t, zmq_pollitem_t *items, int n,
                      int64_t now_us)
{
    if (n > 0 && items[0].revents)
        s_flush(t, now_us);
}

const evr_transport_ops_t evr_tr_datagram = {
    .name = "datagram",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
    .poll_items = s_poll_items,
    .on_poll = s_on_poll,
};

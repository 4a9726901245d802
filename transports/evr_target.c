#define _GNU_SOURCE
/*  evr_target.c - one delivery destination and its I/O.

    Datagram targets keep one connected, non-blocking socket: a connected
    UDP socket learns about ICMP port-unreachable (ECONNREFUSED on a later
    send), so a dead subscriber shows as failures instead of silent loss; a
    connected unix socket lets poll() tell when the receiver's queue has room
    again. Writes go out in batches with sendmmsg(). Flatstore targets write
    whole lines with writev() on an O_APPEND descriptor, so lines from
    several targets sharing a file never tear; a rotation request makes the
    worker reopen the path before its next write (logrotate: mv, then
    `evrelayctl flatstore-rotate` or SIGHUP).
*/
#include "evr_target.h"
#include "evr_event.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define BATCH_MAX 64

struct _evr_target_t {
    int refs; //  atomic
    evr_sockspec_t *spec;
    evr_transport_t transport;
    evr_format_t format;
    int worker;
    int fd;
    int file_mode;
    struct sockaddr_storage addr; //  unix: where to (re)connect
    socklen_t addrlen;
    bool connected;
    //  Reopen requests: the worker reopens when want != have, or when the
    //  global generation moved.
    int reopen_want; //  atomic
    int reopen_have;
    int global_have;
    //  The queue, a ring of messages owned by the worker.
    evr_msg_t **ring;
    size_t ring_cap; //  power of two
    size_t head, count;
    uint64_t mark; //  worker's work-list round
    //  Counters (atomics).
    uint64_t delivered, failed, dropped, queued;
    uint64_t latency_count[EVR_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us;
};

const uint64_t evr_latency_bounds_us[EVR_LATENCY_BUCKETS] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

static int s_global_reopen; //  atomic generation for SIGHUP

//  Atomic helpers, relaxed: counters need no ordering.
#define S_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define S_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_RELAXED)
#define S_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)

//  Allocate a message holding a copy of len bytes, with `refs` references.
evr_msg_t *evr_msg_new(const void *data, size_t len, int refs)
{
    evr_msg_t *msg = malloc(sizeof(evr_msg_t) + len);
    if (!msg)
        return NULL;
    msg->refs = refs;
    msg->len = (uint32_t)len;
    msg->raised_us = 0;
    memcpy(msg->data, data, len);
    return msg;
}

//  Drop one reference; frees the message at zero.
void evr_msg_unref(evr_msg_t *msg)
{
    if (msg && __atomic_sub_fetch(&msg->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(msg);
}

//  Resolve a udp host once, as OpenSIPS does at subscribe time.
static int s_resolve(evr_target_t *self, char *err, size_t errlen)
{
    char port[8];
    snprintf(port, sizeof port, "%d", evr_sockspec_port(self->spec));
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    int rc = getaddrinfo(evr_sockspec_host(self->spec), port, &hints, &res);
    if (rc != 0 && rc != EAI_SYSTEM) {
        //  AI_ADDRCONFIG hides ::1 on hosts without a global IPv6 address
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(evr_sockspec_host(self->spec), port, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s",
                 evr_sockspec_host(self->spec), gai_strerror(rc));
        return -1;
    }
    memcpy(&self->addr, res->ai_addr, res->ai_addrlen);
    self->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

//  Open the datagram socket (and connect udp; unix connects lazily).
static int s_open_datagram(evr_target_t *self, const evr_target_opts_t *opts,
                           char *err, size_t errlen)
{
    if (self->transport == EVR_TRANSPORT_UDP) {
        if (s_resolve(self, err, errlen))
            return -1;
    } else {
        struct sockaddr_un *sun = (struct sockaddr_un *)&self->addr;
        sun->sun_family = AF_UNIX;
        const char *path = evr_sockspec_path(self->spec);
        if (strlen(path) >= sizeof sun->sun_path) {
            snprintf(err, errlen, "unix path too long");
            return -1;
        }
        strcpy(sun->sun_path, path);
        self->addrlen = sizeof(struct sockaddr_un);
    }
    self->fd = socket(self->addr.ss_family,
                      SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (opts->sndbuf > 0)
        setsockopt(self->fd, SOL_SOCKET, SO_SNDBUF, &opts->sndbuf,
                   sizeof opts->sndbuf);
    if (self->transport == EVR_TRANSPORT_UDP) {
        if (connect(self->fd, (struct sockaddr *)&self->addr, self->addrlen)) {
            snprintf(err, errlen, "connect: %s", strerror(errno));
            return -1;
        }
        self->connected = true;
    }
    return 0;
}

//  Open (or reopen) the flatstore file.
static int s_open_file(evr_target_t *self, char *err, size_t errlen)
{
    const char *path = evr_sockspec_path(self->spec);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                  (mode_t)self->file_mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "'%s' is a directory", path);
        return -1;
    }
    if (self->fd >= 0)
        close(self->fd);
    self->fd = fd;
    return 0;
}

//  Create a target for spec and open its I/O.
evr_target_t *evr_target_new(const evr_sockspec_t *spec,
                             const evr_target_opts_t *opts, int worker,
                             char *err, size_t errlen)
{
    evr_target_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->refs = 1;
    self->fd = -1;
    self->worker = worker;
    self->file_mode = opts->file_mode;
    self->transport = evr_sockspec_transport(spec);
    self->global_have = S_GET(&s_global_reopen);
    self->spec = evr_sockspec_parse(evr_sockspec_canonical(spec), err, errlen);
    int rc = -1;
    if (self->spec) {
        switch (self->transport) {
            case EVR_TRANSPORT_UDP:
            case EVR_TRANSPORT_UNIX:
                self->format = opts->datagram_legacy ? EVR_FORMAT_LEGACY
                                                     : EVR_FORMAT_JSONRPC;
                rc = s_open_datagram(self, opts, err, errlen);
                break;
            case EVR_TRANSPORT_FLATSTORE:
                self->format = EVR_FORMAT_FLATSTORE;
                rc = s_open_file(self, err, errlen);
                break;
        }
    }
    if (rc) {
        evr_target_unref(&self);
        return NULL;
    }
    return self;
}

//  Take a reference.
void evr_target_ref(evr_target_t *self)
{
    __atomic_add_fetch(&self->refs, 1, __ATOMIC_RELAXED);
}

//  Drop a reference and NULL the pointer; closes and frees at zero.
void evr_target_unref(evr_target_t **self_p)
{
    evr_target_t *self = *self_p;
    *self_p = NULL;
    if (!self || __atomic_sub_fetch(&self->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    evr_target_discard(self);
    free(self->ring);
    if (self->fd >= 0)
        close(self->fd);
    evr_sockspec_destroy(&self->spec);
    free(self);
}

//  The canonical socket string.
const char *evr_target_socket(const evr_target_t *self)
{
    return evr_sockspec_canonical(self->spec);
}

//  The transport name.
const char *evr_target_transport(const evr_target_t *self)
{
    return evr_sockspec_transport_name(self->spec);
}

//  flatstore: the file path; NULL for others.
const char *evr_target_path(const evr_target_t *self)
{
    return self->transport == EVR_TRANSPORT_FLATSTORE
               ? evr_sockspec_path(self->spec)
               : NULL;
}

//  The payload format this target consumes.
evr_format_t evr_target_format(const evr_target_t *self)
{
    return self->format;
}

//  The worker that owns the target's I/O.
int evr_target_worker(const evr_target_t *self)
{
    return self->worker;
}

//  Core thread: account for one message about to be queued.
int evr_target_admit(evr_target_t *self, size_t limit)
{
    if (S_GET(&self->queued) >= limit) {
        S_ADD(&self->dropped, 1);
        return -1;
    }
    S_ADD(&self->queued, 1);
    return 0;
}

//  Worker: the fd to wait on for POLLOUT, or -1.
int evr_target_fd(const evr_target_t *self)
{
    return self->fd;
}

//  Worker: queue msg behind what the target already holds.
int evr_target_push(evr_target_t *self, evr_msg_t *msg)
{
    if (self->count == self->ring_cap) {
        size_t cap = self->ring_cap ? self->ring_cap * 2 : 256;
        evr_msg_t **ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < self->count; i++)
            ring[i] = self->ring[(self->head + i) & (self->ring_cap - 1)];
        free(self->ring);
        self->ring = ring;
        self->ring_cap = cap;
        self->head = 0;
    }
    self->ring[(self->head + self->count) & (self->ring_cap - 1)] = msg;
    self->count++;
    return 0;
}

//  The histogram bucket of a latency.
static size_t s_bucket(uint64_t us)
{
    size_t b = 0;
    while (b < EVR_LATENCY_BUCKETS && us > evr_latency_bounds_us[b])
        b++;
    return b;
}

//  Remove n messages from the front of the queue, counting them (and their
//  latency, when they were delivered).
static void s_pop(evr_target_t *self, size_t n, uint64_t *counter)
{
    int64_t now_us = counter == &self->delivered ? evr_wall_us() : 0;
    for (size_t i = 0; i < n; i++) {
        evr_msg_t *msg = self->ring[self->head];
        if (now_us && msg->raised_us > 0) {
            uint64_t us = now_us > msg->raised_us
                              ? (uint64_t)(now_us - msg->raised_us)
                              : 0;
            S_ADD(&self->latency_count[s_bucket(us)], 1);
            S_ADD(&self->latency_sum_us, us);
        }
        evr_msg_unref(msg);
        self->head = (self->head + 1) & (self->ring_cap - 1);
    }
    self->count -= n;
    S_SUB(&self->queued, n);
    S_ADD(counter, n);
}

//  Whether a send error means "this destination is gone" (count and move
//  on) rather than "try again later".
static bool s_hard_error(int err)
{
    return err != EAGAIN && err != EWOULDBLOCK && err != EINTR &&
           err != ENOBUFS;
}

//  unix: (re)connect to the listener's path. Returns 0 or -1.
static int s_connect_unix(evr_target_t *self)
{
    if (connect(self->fd, (struct sockaddr *)&self->addr, self->addrlen) == 0) {
        self->connected = true;
        return 0;
    }
    self->connected = false;
    return -1;
}

//  Datagram flush: sendmmsg in batches.
static int s_flush_datagram(evr_target_t *self)
{
    struct mmsghdr mm[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    while (self->count) {
        if (!self->connected && s_connect_unix(self)) {
            s_pop(self, 1, &self->failed);
            continue;
        }
        size_t n = self->count < BATCH_MAX ? self->count : BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            evr_msg_t *msg =
                self->ring[(self->head + i) & (self->ring_cap - 1)];
            iov[i].iov_base = msg->data;
            iov[i].iov_len = msg->len;
            memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(self->fd, mm, (unsigned)n, MSG_DONTWAIT);
        if (sent > 0) {
            s_pop(self, (size_t)sent, &self->delivered);
            continue;
        }
        if (!s_hard_error(errno))
            return errno == EINTR ? 0 : 1;
        //  The first message was refused: a closed port or a vanished
        //  unix listener. Count it; unix sockets reconnect on the next try.
        if (self->transport == EVR_TRANSPORT_UNIX)
            self->connected = false;
        s_pop(self, 1, &self->failed);
    }
    return 0;
}

//  Flatstore flush: reopen if asked, then writev whole lines.
static int s_flush_file(evr_target_t *self)
{
    int want = S_GET(&self->reopen_want);
    int global = S_GET(&s_global_reopen);
    if (want != self->reopen_have || global != self->global_have) {
        char err[256];
        self->reopen_have = want;
        self->global_have = global;
        if (s_open_file(self, err, sizeof err) && self->fd < 0) {
            s_pop(self, self->count, &self->failed);
            return 0;
        }
    }
    struct iovec iov[BATCH_MAX];
    while (self->count) {
        size_t n = self->count < BATCH_MAX ? self->count : BATCH_MAX;
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            evr_msg_t *msg =
                self->ring[(self->head + i) & (self->ring_cap - 1)];
            iov[i].iov_base = msg->data;
            iov[i].iov_len = msg->len;
            total += msg->len;
        }
        ssize_t rc = writev(self->fd, iov, (int)n);
        if (rc == (ssize_t)total) {
            s_pop(self, n, &self->delivered);
            continue;
        }
        if (rc < 0 && errno == EINTR)
            continue;
        //  A short or failed write of a local file (disk full, I/O error):
        //  count the batch as failed rather than retrying forever.
        s_pop(self, n, &self->failed);
    }
    return 0;
}

//  Worker: write as much of the queue as the destination accepts.
int evr_target_flush(evr_target_t *self)
{
    if (self->transport == EVR_TRANSPORT_FLATSTORE)
        return s_flush_file(self);
    return s_flush_datagram(self);
}

//  Worker: mark the target as seen in pass `round`.
bool evr_target_mark(evr_target_t *self, uint64_t round)
{
    if (self->mark == round)
        return false;
    self->mark = round;
    return true;
}

//  Worker: drop everything still queued (counted as dropped).
void evr_target_discard(evr_target_t *self)
{
    if (self->count)
        s_pop(self, self->count, &self->dropped);
}

//  flatstore: reopen the file before the next write (rotation).
void evr_target_request_reopen(evr_target_t *self)
{
    S_ADD(&self->reopen_want, 1);
}

//  Reopen every flatstore file before its next write (SIGHUP).
void evr_target_reopen_all(void)
{
    S_ADD(&s_global_reopen, 1);
}

//  Snapshot the counters.
void evr_target_stats(const evr_target_t *self, evr_target_stats_t *stats)
{
    stats->delivered = S_GET(&self->delivered);
    stats->failed = S_GET(&self->failed);
    stats->dropped = S_GET(&self->dropped);
    stats->queued = S_GET(&self->queued);
    for (size_t b = 0; b <= EVR_LATENCY_BUCKETS; b++)
        stats->latency_count[b] = S_GET(&self->latency_count[b]);
    stats->latency_sum_us = S_GET(&self->latency_sum_us);
}

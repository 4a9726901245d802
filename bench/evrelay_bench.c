/*  evrelay_bench.c - end-to-end throughput and latency of evrelay.

    evrelay-bench [-v] [-n N] [--runs R] [--port-base P]
                  [--relay PATH] [--ctl PATH]

    Starts its own evrelayd (ingest on tcp://127.0.0.1:P, control on P+1)
    and, per run:

    1. raw: one thread sendto()s N pre-built payloads of the relay's shape
       (~200-byte JSON-RPC notifications) straight to a UDP sink. That is
       the physical limit of the last hop: rate = received / (last receive
       - first send).
    2. relay: subscribes a fresh UDP sink to E_BENCH, raises N events
       (params seq, ts = CLOCK_REALTIME us at raise, pad) through
       libevrelay as fast as it can, and lets the sink measure: rate =
       received / (last receive - first raise); latency = receive - ts.

    Every sink has a 4 MiB receive buffer, counts what it actually got,
    and tracks lost and duplicate seqs in a bitmap. A run ends when all N
    arrived or nothing arrived for 1 s. The summary holds medians across
    runs and a last machine-readable line starting with RESULT.
*/

#define _GNU_SOURCE //  recvmmsg
#include "evrelay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_EVENT "E_BENCH"

//  Size of one bench payload as the sink receives it, bytes.
#define S_PAYLOAD_BYTES 200

//  Receive buffer of every sink: holds ~20,000 payloads of a burst.
#define S_SINK_RCVBUF (4 * 1024 * 1024)

//  Datagrams per recvmmsg call, and the largest datagram we keep.
#define S_SINK_BATCH 64
#define S_SINK_DGRAM 2048

//  A run is over when nothing arrived for this long, us.
#define S_QUIET_US 1000000

//  And in any case after this long, us.
#define S_RUN_MAX_US 300000000LL

//  How long the relay gets to answer `list` after it starts, ms.
#define S_RELAY_START_MS 10000

//  Timeout evrelayctl gets per call, ms (passed with -t).
#define S_CTL_TIMEOUT_MS "2000"

//  Expire of the sink's subscription, seconds (longer than any run).
#define S_SUB_EXPIRE "3600"

static volatile sig_atomic_t s_interrupted = 0;

//  One UDP sink and what it counted. The thread writes the atomics; the
//  main thread reads them while waiting and everything after the join.
typedef struct {
    int fd;
    uint16_t port;
    int rcvbuf;       //  effective SO_RCVBUF as the kernel reports it
    size_t n;         //  valid seqs are 1..n
    bool latency;     //  record latency = receive - ts
    uint64_t *bitmap; //  seqs seen
    int64_t *lat_us;  //  one latency per first-seen seq
    size_t lat_count;
    atomic_uint_fast64_t datagrams;  //  everything received
    atomic_uint_fast64_t unique;     //  distinct valid seqs
    atomic_uint_fast64_t dups;       //  valid seqs seen again
    atomic_uint_fast64_t invalid;    //  no/out-of-range seq
    atomic_int_fast64_t first_rx_us; //  monotonic, 0 = nothing yet
    atomic_int_fast64_t last_rx_us;  //  monotonic, last new seq
    atomic_bool stop;
    pthread_t thread;
    bool running; //  thread not joined yet
    char (*bufs)[S_SINK_DGRAM + 1];
} s_sink_t;

//  What one run measured.
typedef struct {
    double raw_eps;
    uint64_t raw_received;
    double relay_eps;
    double p50_us;
    double p99_us;
    uint64_t received;
    uint64_t lost;
    uint64_t dup;
    uint64_t dropped; //  libevrelay queue drops
    uint64_t resent;
} s_result_t;

//  Settings from the command line.
typedef struct {
    const char *relay;
    const char *ctl;
    size_t n;
    int runs;
    int port_base;
    bool verbose;
    char ingest[64];
    char control[64];
} s_bench_t;

//  --------------------------------------------------------------------------
//  Monotonic clock, microseconds.

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --------------------------------------------------------------------------
//  Wall clock, microseconds since the epoch (the clock of the ts param).

static int64_t s_real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --------------------------------------------------------------------------
//  Sleep for ms milliseconds.

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

//  --------------------------------------------------------------------------
//  Signal handler: ask the bench to stop and clean up.

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

//  --------------------------------------------------------------------------
//  Parse the int after key (e.g. "\"seq\":") in a NUL-terminated payload.
//  Returns 0 and sets *value, or -1 when the key is missing.

static int s_find_int(const char *text, const char *key, int64_t *value)
{
    const char *at = strstr(text, key);
    if (!at)
        return -1;
    at += strlen(key);
    while (*at == ' ')
        at++;
    char *end;
    errno = 0;
    long long parsed = strtoll(at, &end, 10);
    if (end == at || errno)
        return -1;
    *value = parsed;
    return 0;
}

//  --------------------------------------------------------------------------
//  Count one received payload.

static void s_sink_count(s_sink_t *self, char *data, size_t len, int64_t now,
                         int64_t real_now)
{
    data[len] = '\0';
    atomic_fetch_add_explicit(&self->datagrams, 1, memory_order_relaxed);
    int64_t seq, ts;
    if (s_find_int(data, "\"seq\":", &seq) || seq < 1 ||
        (uint64_t)seq > self->n) {
        atomic_fetch_add_explicit(&self->invalid, 1, memory_order_relaxed);
        return;
    }
    uint64_t bit = 1ULL << (seq % 64);
    if (self->bitmap[seq / 64] & bit) {
        atomic_fetch_add_explicit(&self->dups, 1, memory_order_relaxed);
        return;
    }
    self->bitmap[seq / 64] |= bit;
    if (self->latency && s_find_int(data, "\"ts\":", &ts) == 0)
        self->lat_us[self->lat_count++] = real_now - ts;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&self->first_rx_us, &zero, now);
    atomic_store_explicit(&self->last_rx_us, now, memory_order_relaxed);
    atomic_fetch_add_explicit(&self->unique, 1, memory_order_release);
}

//  --------------------------------------------------------------------------
//  Sink thread: receive in batches until told to stop.

static void *s_sink_thread(void *arg)
{
    s_sink_t *self = arg;
    struct mmsghdr msgs[S_SINK_BATCH];
    struct iovec iovs[S_SINK_BATCH];
    while (!atomic_load(&self->stop)) {
        for (int i = 0; i < S_SINK_BATCH; i++) {
            iovs[i].iov_base = self->bufs[i];
            iovs[i].iov_len = S_SINK_DGRAM;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(self->fd, msgs, S_SINK_BATCH, MSG_WAITFORONE, NULL);
        if (got <= 0)
            continue; //  timeout (to check stop) or EINTR
        int64_t now = s_mono_us(), real_now = s_real_us();
        for (int i = 0; i < got; i++)
            s_sink_count(self, self->bufs[i], msgs[i].msg_len, now, real_now);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Create a sink on 127.0.0.1 (ephemeral port) expecting seqs 1..n, with a
//  4 MiB receive buffer, and start its thread. NULL on failure.

static s_sink_t *s_sink_new(size_t n, bool latency)
{
    s_sink_t *self = calloc(1, sizeof(s_sink_t));
    if (!self)
        return NULL;
    self->n = n;
    self->latency = latency;
    self->bitmap = calloc(n / 64 + 1, sizeof(uint64_t));
    self->lat_us = latency ? malloc(n * sizeof(int64_t)) : NULL;
    self->bufs = malloc(S_SINK_BATCH * sizeof(*self->bufs));
    self->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (!self->bitmap || (latency && !self->lat_us) || !self->bufs ||
        self->fd < 0)
        goto fail;
    int size = S_SINK_RCVBUF;
    if (geteuid() != 0 ||
        setsockopt(self->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        setsockopt(self->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    socklen_t optlen = sizeof(self->rcvbuf);
    getsockopt(self->fd, SOL_SOCKET, SO_RCVBUF, &self->rcvbuf, &optlen);
    struct timeval tv = {0, 100000}; //  check stop every 100 ms
    setsockopt(self->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addrlen = sizeof(addr);
    if (bind(self->fd, (struct sockaddr *)&addr, sizeof(addr)) ||
        getsockname(self->fd, (struct sockaddr *)&addr, &addrlen))
        goto fail;
    self->port = ntohs(addr.sin_port);
    if (pthread_create(&self->thread, NULL, s_sink_thread, self))
        goto fail;
    self->running = true;
    return self;
fail:
    if (self->fd >= 0)
        close(self->fd);
    free(self->bitmap);
    free(self->lat_us);
    free(self->bufs);
    free(self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Stop the sink's thread; its counters and arrays are final after this.

static void s_sink_stop(s_sink_t *self)
{
    if (!self->running)
        return;
    atomic_store(&self->stop, true);
    pthread_join(self->thread, NULL);
    self->running = false;
}

//  --------------------------------------------------------------------------
//  Stop the sink's thread and free it. Safe on NULL.

static void s_sink_destroy(s_sink_t **self_p)
{
    if (!*self_p)
        return;
    s_sink_t *self = *self_p;
    s_sink_stop(self);
    close(self->fd);
    free(self->bitmap);
    free(self->lat_us);
    free(self->bufs);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Wait until the sink has all n seqs, or nothing new arrived for 1 s
//  after both the sink's last arrival and since_us (when sending ended).

static void s_sink_wait(s_sink_t *self, int64_t since_us)
{
    int64_t start = s_mono_us();
    while (!s_interrupted) {
        if (atomic_load(&self->unique) >= self->n)
            break;
        int64_t now = s_mono_us();
        int64_t last = atomic_load(&self->last_rx_us);
        if (last < since_us)
            last = since_us;
        if (now - last > S_QUIET_US || now - start > S_RUN_MAX_US)
            break;
        s_sleep_ms(5);
    }
}

//  --------------------------------------------------------------------------
//  Format the payload the relay sends for (seq, ts, pad) into buf.
//  Returns its length.

static int s_payload(char *buf, size_t size, size_t seq, int64_t ts,
                     const char *pad)
{
    return snprintf(buf, size,
                    "{\"jsonrpc\":\"2.0\",\"method\":\"" S_EVENT "\","
                    "\"params\":{\"seq\":%zu,\"ts\":%" PRId64
                    ",\"pad\":\"%s\"}}",
                    seq, ts, pad);
}

//  --------------------------------------------------------------------------
//  The pad string that makes a payload about S_PAYLOAD_BYTES long for
//  seqs up to n. Caller frees.

static char *s_pad_new(size_t n)
{
    char probe[512];
    int base = s_payload(probe, sizeof(probe), n, s_real_us(), "");
    size_t len = base < S_PAYLOAD_BYTES ? (size_t)(S_PAYLOAD_BYTES - base) : 0;
    char *pad = malloc(len + 1);
    if (pad) {
        memset(pad, 'x', len);
        pad[len] = '\0';
    }
    return pad;
}

//  Arguments of the raw sender thread.
typedef struct {
    uint16_t port;
    char *payloads; //  n slots of S_PAYLOAD_BYTES * 2 bytes
    int *lens;
    size_t n;
    int64_t first_send_us;
    uint64_t errors;
} s_sender_t;

//  --------------------------------------------------------------------------
//  Raw sender thread: sendto() every payload, as fast as possible.

static void *s_sender_thread(void *arg)
{
    s_sender_t *self = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(self->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    self->first_send_us = s_mono_us();
    for (size_t i = 0; i < self->n && fd >= 0 && !s_interrupted; i++) {
        if (sendto(fd, self->payloads + i * S_PAYLOAD_BYTES * 2,
                   (size_t)self->lens[i], 0, (struct sockaddr *)&addr,
                   sizeof(addr)) == -1)
            self->errors++;
    }
    if (fd >= 0)
        close(fd);
    else
        self->errors = self->n;
    return NULL;
}

//  --------------------------------------------------------------------------
//  Raw baseline: pre-build n payloads, send them from one thread to a
//  fresh sink. Returns 0 or -1.

static int s_run_raw(s_bench_t *bench, s_result_t *result)
{
    s_sender_t sender = {.n = bench->n};
    sender.payloads = malloc(bench->n * S_PAYLOAD_BYTES * 2);
    sender.lens = malloc(bench->n * sizeof(int));
    char *pad = s_pad_new(bench->n);
    s_sink_t *sink = s_sink_new(bench->n, false);
    int rc = -1;
    if (!sender.payloads || !sender.lens || !pad || !sink)
        goto done;
    int64_t ts = s_real_us();
    for (size_t i = 0; i < bench->n; i++)
        sender.lens[i] = s_payload(sender.payloads + i * S_PAYLOAD_BYTES * 2,
                                   S_PAYLOAD_BYTES * 2, i + 1, ts, pad);
    sender.port = sink->port;
    pthread_t thread;
    if (pthread_create(&thread, NULL, s_sender_thread, &sender))
        goto done;
    pthread_join(thread, NULL);
    s_sink_wait(sink, s_mono_us());
    s_sink_stop(sink);
    result->raw_received = atomic_load(&sink->unique);
    int64_t span = atomic_load(&sink->last_rx_us) - sender.first_send_us;
    result->raw_eps =
        span > 0 ? (double)result->raw_received * 1e6 / (double)span : 0;
    if (sender.errors)
        fprintf(stderr, "evrelay-bench: raw: %" PRIu64 " sendto errors\n",
                sender.errors);
    rc = 0;
done:
    s_sink_destroy(&sink);
    free(pad);
    free(sender.lens);
    free(sender.payloads);
    return rc;
}

//  --------------------------------------------------------------------------
//  Start a program with argv, stdout and stderr to /dev/null unless
//  verbose. The child gets SIGTERM if the bench dies. Returns its pid or -1.

static pid_t s_spawn(char *const argv[], bool verbose)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (!verbose) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    execv(argv[0], argv);
    _exit(127);
}

//  --------------------------------------------------------------------------
//  Run a program to the end. Returns its exit status, or -1.

static int s_run(char *const argv[], bool verbose)
{
    pid_t pid = s_spawn(argv, verbose);
    if (pid < 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

//  --------------------------------------------------------------------------
//  Run evrelayctl with up to four arguments. Returns its exit status.

static int s_ctl(s_bench_t *bench, const char *a1, const char *a2,
                 const char *a3, const char *a4)
{
    char *argv[] = {(char *)bench->ctl, "-s",       bench->control, "-t",
                    S_CTL_TIMEOUT_MS,   (char *)a1, (char *)a2,     (char *)a3,
                    (char *)a4,         NULL};
    return s_run(argv, bench->verbose);
}

//  --------------------------------------------------------------------------
//  Subscribe (expire "3600") or unsubscribe (expire "0") a sink port.
//  Returns 0 or -1.

static int s_subscribe(s_bench_t *bench, uint16_t port, const char *expire)
{
    char socket[64];
    snprintf(socket, sizeof(socket), "udp:127.0.0.1:%u", port);
    int rc = s_ctl(bench, "subscribe", S_EVENT, socket, expire);
    if (rc != 0)
        fprintf(stderr,
                "evrelay-bench: evrelayctl subscribe %s %s %s: exit %d\n",
                S_EVENT, socket, expire, rc);
    return rc == 0 ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Raise one bench event. Returns evr_raise's answer.

static int s_raise(evr_client_t *client, size_t seq, const char *pad)
{
    evr_event_t *event = evr_event_new(S_EVENT);
    if (!event)
        return -1;
    evr_event_add_int(event, "seq", (int64_t)seq);
    evr_event_add_int(event, "ts", s_real_us());
    evr_event_add_str(event, "pad", pad);
    return evr_raise(client, &event);
}

//  --------------------------------------------------------------------------
//  Compare two int64s, for qsort.

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

//  --------------------------------------------------------------------------
//  The p-th percentile (nearest rank) of sorted[0..n).

static double s_percentile(const int64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1];
}

//  --------------------------------------------------------------------------
//  Relay run: raise n events through libevrelay to a fresh subscribed
//  sink. Returns 0 or -1.

static int s_run_relay(s_bench_t *bench, s_result_t *result)
{
    char *pad = s_pad_new(bench->n);
    s_sink_t *sink = s_sink_new(bench->n, true);
    evr_client_t *client = NULL;
    bool subscribed = false;
    int rc = -1;
    if (!pad || !sink)
        goto done;
    if (s_subscribe(bench, sink->port, S_SUB_EXPIRE))
        goto done;
    subscribed = true;
    client = evr_client_new(bench->ingest, NULL);
    if (!client) {
        fprintf(stderr, "evrelay-bench: cannot connect to %s\n", bench->ingest);
        goto done;
    }
    //  Warm up the connection and the relay's path to the sink: seq 0 is
    //  acked, delivered and not counted by the sink
    if (s_raise(client, 0, pad) || evr_client_flush(client, 5000)) {
        fprintf(stderr, "evrelay-bench: relay does not ack at %s\n",
                bench->ingest);
        goto done;
    }
    evr_client_stats_t before, after;
    evr_client_stats(client, &before);
    int64_t first_raise = s_mono_us();
    for (size_t seq = 1; seq <= bench->n && !s_interrupted; seq++)
        s_raise(client, seq, pad);
    s_sink_wait(sink, s_mono_us());
    s_sink_stop(sink);
    evr_client_stats(client, &after);

    result->received = atomic_load(&sink->unique);
    result->dup = atomic_load(&sink->dups);
    result->lost = bench->n - result->received;
    result->dropped = after.dropped - before.dropped;
    result->resent = after.resent - before.resent;
    int64_t span = atomic_load(&sink->last_rx_us) - first_raise;
    result->relay_eps =
        span > 0 ? (double)result->received * 1e6 / (double)span : 0;
    qsort(sink->lat_us, sink->lat_count, sizeof(int64_t), s_cmp_i64);
    result->p50_us = s_percentile(sink->lat_us, sink->lat_count, 50);
    result->p99_us = s_percentile(sink->lat_us, sink->lat_count, 99);
    rc = 0;
done:
    evr_client_destroy(&client);
    if (subscribed)
        s_subscribe(bench, sink->port, "0");
    s_sink_destroy(&sink);
    free(pad);
    return rc;
}

//  --------------------------------------------------------------------------
//  Start evrelayd and wait until `evrelayctl list` answers. Returns the
//  relay's pid, or -1.

static pid_t s_relay_start(s_bench_t *bench)
{
    char *argv[] = {(char *)bench->relay, "--ingest",     bench->ingest,
                    "--control",          bench->control, NULL};
    pid_t pid = s_spawn(argv, bench->verbose);
    if (pid < 0)
        return -1;
    int64_t deadline = s_mono_us() + S_RELAY_START_MS * 1000LL;
    while (!s_interrupted && s_mono_us() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "evrelay-bench: %s exited at start (%s %d)\n",
                    bench->relay, WIFEXITED(status) ? "exit" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            return -1;
        }
        if (s_ctl(bench, "list", NULL, NULL, NULL) == 0)
            return pid;
        s_sleep_ms(50);
    }
    fprintf(stderr, "evrelay-bench: relay does not answer at %s\n",
            bench->control);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

//  --------------------------------------------------------------------------
//  Stop the relay: SIGTERM, then SIGKILL after 5 s.

static void s_relay_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        s_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

//  --------------------------------------------------------------------------
//  The median of n doubles (sorts them).

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double s_median(double *values, size_t n)
{
    if (n == 0)
        return 0;
    qsort(values, n, sizeof(double), s_cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

//  --------------------------------------------------------------------------
//  Print the summary of all runs: medians, and the RESULT line.

static void s_summary(const s_result_t *results, int runs)
{
    double raw[runs], relay[runs], ratio[runs], p50[runs], p99[runs],
        received[runs], lost[runs], dup[runs], dropped[runs], resent[runs];
    for (int i = 0; i < runs; i++) {
        raw[i] = results[i].raw_eps;
        relay[i] = results[i].relay_eps;
        ratio[i] = raw[i] > 0 ? relay[i] / raw[i] : 0;
        p50[i] = results[i].p50_us;
        p99[i] = results[i].p99_us;
        received[i] = (double)results[i].received;
        lost[i] = (double)results[i].lost;
        dup[i] = (double)results[i].dup;
        dropped[i] = (double)results[i].dropped;
        resent[i] = (double)results[i].resent;
    }
    double m_raw = s_median(raw, runs), m_relay = s_median(relay, runs),
           m_ratio = s_median(ratio, runs), m_p50 = s_median(p50, runs),
           m_p99 = s_median(p99, runs), m_lost = s_median(lost, runs),
           m_dup = s_median(dup, runs);
    printf("summary (median of %d runs):\n"
           "  raw sendto     %12.0f events/s\n"
           "  relay          %12.0f events/s\n"
           "  ratio          %12.3f relay/raw (median of per-run ratios)\n"
           "  latency p50    %12.0f us\n"
           "  latency p99    %12.0f us\n"
           "  received       %12.0f\n"
           "  lost           %12.0f\n"
           "  duplicate      %12.0f\n"
           "  client dropped %12.0f\n"
           "  client resent  %12.0f\n",
           runs, m_raw, m_relay, m_ratio, m_p50, m_p99,
           s_median(received, runs), m_lost, m_dup, s_median(dropped, runs),
           s_median(resent, runs));
    printf("RESULT raw_eps=%.0f relay_eps=%.0f ratio=%.3f p50_us=%.0f "
           "p99_us=%.0f lost=%.0f dup=%.0f\n",
           m_raw, m_relay, m_ratio, m_p50, m_p99, m_lost, m_dup);
}

//  --------------------------------------------------------------------------
//  A program next to this one (or the bench's own directory via
//  /proc/self/exe when argv0 has no slash). Caller frees.

static char *s_sibling(const char *argv0, const char *name)
{
    char self_path[PATH_MAX] = ".";
    if (strchr(argv0, '/'))
        snprintf(self_path, sizeof(self_path), "%s", argv0);
    else {
        ssize_t len =
            readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
        self_path[len > 0 ? len : 0] = '\0';
    }
    char *path = malloc(PATH_MAX);
    if (path)
        snprintf(path, PATH_MAX, "%s/%s", dirname(self_path), name);
    return path;
}

//  --------------------------------------------------------------------------
//  Print the usage text.

static void s_usage(FILE *stream)
{
    fprintf(stream,
            "usage: evrelay-bench [-v] [-n N] [--runs R] [--port-base P]\n"
            "                     [--relay PATH] [--ctl PATH]\n"
            "  -n N           events per run (default 200000)\n"
            "  --runs R       runs; the summary is the median (default 5)\n"
            "  --port-base P  relay ingest on P, control on P+1 "
            "(default 17950)\n"
            "  --relay PATH   evrelayd (default: next to this program)\n"
            "  --ctl PATH     evrelayctl (default: next to this program)\n"
            "  -v             show the relay's and evrelayctl's output\n");
}

int main(int argc, char *argv[])
{
    s_bench_t bench = {.n = 200000, .runs = 5, .port_base = 17950};
    char *relay_path = s_sibling(argv[0], "evrelayd");
    char *ctl_path = s_sibling(argv[0], "evrelayctl");
    bench.relay = relay_path;
    bench.ctl = ctl_path;
    static const struct option longopts[] = {
        {"relay", required_argument, 0, 'r'},
        {"ctl", required_argument, 0, 'c'},
        {"runs", required_argument, 0, 'R'},
        {"port-base", required_argument, 0, 'p'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "n:vh", longopts, NULL)) != -1) {
        switch (opt) {
            case 'r':
                bench.relay = optarg;
                break;
            case 'c':
                bench.ctl = optarg;
                break;
            case 'n':
                bench.n = strtoul(optarg, NULL, 10);
                break;
            case 'R':
                bench.runs = atoi(optarg);
                break;
            case 'p':
                bench.port_base = atoi(optarg);
                break;
            case 'v':
                bench.verbose = true;
                break;
            case 'h':
                s_usage(stdout);
                free(relay_path);
                free(ctl_path);
                return 0;
            default:
                s_usage(stderr);
                free(relay_path);
                free(ctl_path);
                return 2;
        }
    }
    if (bench.n < 1 || bench.runs < 1 || bench.port_base < 1 ||
        bench.port_base > 65534 || optind != argc) {
        s_usage(stderr);
        free(relay_path);
        free(ctl_path);
        return 2;
    }
    snprintf(bench.ingest, sizeof(bench.ingest), "tcp://127.0.0.1:%d",
             bench.port_base);
    snprintf(bench.control, sizeof(bench.control), "tcp://127.0.0.1:%d",
             bench.port_base + 1);

    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    s_result_t *results = calloc((size_t)bench.runs, sizeof(s_result_t));
    pid_t relay = -1;
    if (!results)
        goto done;
    if (access(bench.relay, X_OK) || access(bench.ctl, X_OK)) {
        fprintf(stderr, "evrelay-bench: need %s and %s (see --relay, --ctl)\n",
                bench.relay, bench.ctl);
        goto done;
    }
    relay = s_relay_start(&bench);
    if (relay < 0)
        goto done;
    s_sink_t *probe = s_sink_new(1, false);
    if (probe) {
        printf("evrelay-bench: %zu events x %d runs, payload ~%d B, "
               "sink SO_RCVBUF reads %d B (asked %d; Linux doubles it)\n",
               bench.n, bench.runs, S_PAYLOAD_BYTES, probe->rcvbuf,
               S_SINK_RCVBUF);
        s_sink_destroy(&probe);
    }
    int run = 0;
    for (; run < bench.runs && !s_interrupted; run++) {
        s_result_t *r = &results[run];
        if (s_run_raw(&bench, r) || s_interrupted || s_run_relay(&bench, r))
            break;
        printf("run %d: raw %.0f ev/s (recv %" PRIu64 ") | relay %.0f ev/s "
               "p50 %.0f us p99 %.0f us recv %" PRIu64 " lost %" PRIu64
               " dup %" PRIu64 " | client dropped %" PRIu64 " resent %" PRIu64
               "\n",
               run + 1, r->raw_eps, r->raw_received, r->relay_eps, r->p50_us,
               r->p99_us, r->received, r->lost, r->dup, r->dropped, r->resent);
        fflush(stdout);
    }
    if (run == bench.runs) {
        s_summary(results, bench.runs);
        rc = 0;
    }
done:
    s_relay_stop(relay);
    free(results);
    free(relay_path);
    free(ctl_path);
    return rc;
}

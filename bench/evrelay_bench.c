/*  evrelay_bench.c - end-to-end throughput and latency of evrelay, per
    transport, each next to its own raw baseline measured in the same run.

    evrelay-bench [-v] [-n N] [--runs R] [--port-base P]
                  [--scenario udp|parallel|zmq|rabbitmq|acks|curve|all]
                  [--ack accepted|delivered|none]
                  [--acks-on udp|parallel|zmq|rabbitmq]
                  [--amqp-port P] [--relay PATH] [--ctl PATH]

    Starts its own evrelayd (ingest on tcp://127.0.0.1:P, control on P+1)
    and, per scenario and run, measures two halves against fresh sinks:

    1. raw: the bench hands N pre-built payloads of the relay's shape
       (~200-byte JSON-RPC notifications) to the scenario's transport
       itself, from one thread, as fast as it can: the physical limit of
       the last hop. rate = deliveries / (last receive - first send).
    2. relay: subscribes the sinks to E_BENCH with the scenario's socket,
       raises N events (params seq, ts = CLOCK_REALTIME us at raise, pad)
       through libevrelay as fast as it can, and lets the sinks measure:
       rate = deliveries / (last receive - first raise); latency =
       receive - ts. The client uses the ack point --ack (default
       accepted).

    Scenarios: sink(s); subscribed socket; raw baseline.

    udp       one UDP sink; udp:127.0.0.1:A; sendto().
    parallel  two UDP sinks, each gets every event (2N deliveries);
              virtual:PARALLEL udp:127.0.0.1:A udp:127.0.0.1:B; sendto()
              alternately to A and B.
    zmq       a PULL socket bound to tcp://127.0.0.1:P; zmq:push:...; a
              PUSH socket of the bench connected to the same PULL.
    rabbitmq  a consumer (basic.consume, no-ack) of the queue "bench" on
              the default exchange; rabbitmq:127.0.0.1:P/bench; a
              publisher of the bench with publisher confirms and at most
              S_AMQP_WINDOW unconfirmed messages. Needs a broker: the bench
              starts a private rabbitmq-server on loopback (own node name,
              ports, epmd and temporary directory, all stopped and removed
              at the end), or uses the one at --amqp-port.
    acks      the sinks and socket of --acks-on (default udp); no raw
              half: per run, three relay halves with the NONE
              (fire-and-forget: the baseline), ACCEPTED and DELIVERED ack
              points, in a rotating order, and the ratios ACCEPTED/NONE
              and DELIVERED/NONE (the cost of at-least-once, measured in
              the same run; target >= 0.9).
    curve     the udp scenario's sink and socket; no raw half of its own:
              per run, six halves in an order that rotates from run to
              run: a relay half against the plain relay and one against
              a second relay with CURVE on ingest and control (ingest on
              P+2, control on P+3; certificates made at run time with
              `evrelayctl keygen` in a temporary directory; the bench's
              evrelayctl calls and libevrelay client then use CURVE); an
              ingest half against each (N events nobody subscribed to,
              timed until the last is acked: the relay's ingest alone,
              not bound by delivery); and a raw ZeroMQ DEALER -> ROUTER
              pair of the bench sending one payload per message, plain
              and with CURVE. It prints the ratios CURVE/plain of each:
              the cost of CURVE on evrelay's batched publishes next to
              its cost per small message, and the CPU time per event of
              the relay and of the bench's process in the relay halves.

    Every sink counts what it actually got and tracks lost and duplicate
    seqs in a bitmap; UDP sinks have a 4 MiB receive buffer. A half ends
    when every sink has all N or nothing arrived for 1 s. Each scenario
    prints medians across runs and a machine-readable line starting with
    RESULT scenario=NAME.
*/

#define _GNU_SOURCE //  recvmmsg, vasprintf, environ
#include "evrelay.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_EVENT "E_BENCH"

//  curve: the event of the ingest halves, which nobody subscribes to.
#define S_EVENT_INGEST "E_BENCH_INGEST"

//  curve: how long an ingest half waits for the last ack, ms.
#define S_INGEST_FLUSH_MS 120000

//  Size of one bench payload as the sink receives it, bytes.
#define S_PAYLOAD_BYTES 200

//  Room for one pre-built raw payload, bytes.
#define S_PAYLOAD_SLOT (S_PAYLOAD_BYTES * 2)

//  Receive buffer of every UDP sink: holds ~20,000 payloads of a burst.
#define S_SINK_RCVBUF (4 * 1024 * 1024)

//  Datagrams per recvmmsg call, and the largest message we keep.
#define S_SINK_BATCH 64
#define S_SINK_DGRAM 2048

//  A sink waits this long for messages before it checks whether to stop.
#define S_SINK_POLL_MS 100

//  The most sinks a scenario has.
#define S_MAX_SINKS 2

//  A half is over when nothing arrived for this long, us.
#define S_QUIET_US 1000000

//  And in any case after this long, us.
#define S_RUN_MAX_US 300000000LL

//  How long every sink gets to receive the warm-up event, ms: zmq and
//  rabbitmq targets connect at their first event.
#define S_WARMUP_MS 10000

//  How long the relay gets to answer `list` after it starts, ms.
#define S_RELAY_START_MS 10000

//  Timeout evrelayctl gets per call, ms (passed with -t), and how long we
//  wait for the process at most, ms.
#define S_CTL_TIMEOUT_MS "2000"
#define S_CTL_WAIT_MS 30000

//  Expire of the sinks' subscription, seconds (longer than any run).
#define S_SUB_EXPIRE "3600"

//  SIGTERM, then SIGKILL after this long, ms.
#define S_STOP_GRACE_MS 5000

//  zmq: how long the raw PUSH may block on one send, and how long what it
//  queued may still go out after it is closed, ms.
#define S_ZMQ_SNDTIMEO_MS 5000
#define S_ZMQ_LINGER_MS 10000

//  zmq: I/O threads of the bench's context (see s_zmq_setup).
#define S_ZMQ_IO_THREADS 2

//  rabbitmq: the queue the bench declares (on the default exchange, so
//  also the routing key), the raw publisher's window of unconfirmed
//  messages, how long it waits for a confirm, s, and the frame size.
#define S_AMQP_QUEUE "bench"
#define S_AMQP_WINDOW 256
#define S_AMQP_CONFIRM_TIMEOUT_S 10
#define S_AMQP_FRAME_MAX 131072

//  rabbitmq: where Debian keeps the broker's own scripts (the ones in
//  /usr/sbin re-run themselves as user rabbitmq with its environment).
#define S_RABBITMQ_LIBEXEC "/usr/lib/rabbitmq/bin"

//  rabbitmq: how long our broker gets to open its AMQP port, one
//  rabbitmqctl call to finish, and the broker to stop, ms.
#define S_BROKER_START_MS 120000
#define S_BROKER_CTL_MS 120000
#define S_BROKER_STOP_MS 60000

//  rabbitmq: environment variables our broker gets.
#define S_BROKER_VARS 20

static volatile sig_atomic_t s_interrupted = 0;

typedef struct s_bench_t s_bench_t;
typedef struct s_sink_t s_sink_t;
typedef struct s_broker_t s_broker_t;
typedef struct s_curve_t s_curve_t;

//  N pre-built payloads for the raw baselines: seq i + 1 is lens[i] bytes
//  at data + i * S_PAYLOAD_SLOT.
typedef struct {
    char *data;
    int *lens;
    size_t n;
} s_payloads_t;

//  One scenario: how its sinks receive, how its raw baseline sends, and
//  what it needs around it. The bench calls open in the main thread, recv
//  in the sink's own thread until told to stop, close after the join.
typedef struct s_scenario_t {
    const char *name;
    const char *about;    //  one line for the header
    const char *raw_name; //  what the raw baseline does
    int sinks;            //  sinks per half; each gets every event
    double target;        //  the relay/raw ratio aimed at; 0 = none
    //  Before the first run: 0 ready, 1 skip (said why), -1 failed.
    //  teardown undoes what setup did. Both may be NULL.
    int (*setup)(s_bench_t *bench);
    void (*teardown)(s_bench_t *bench);
    //  Make the sink's receiving end and its subscriber socket string.
    int (*open)(s_bench_t *bench, s_sink_t *sink);
    //  Wait at most S_SINK_POLL_MS and count what arrived; -1 = give up.
    int (*recv)(s_sink_t *sink);
    void (*close)(s_sink_t *sink);
    //  Raw baseline: hand every payload to every sink, one thread; set
    //  *first_send_us just before the first send.
    int (*raw)(s_bench_t *bench, s_sink_t **sinks, int count,
               const s_payloads_t *payloads, int64_t *first_send_us);
    //  A scenario with halves of its own (acks, curve) runs itself:
    //  0 when it completed or was skipped, -1 on failure. NULL = the
    //  raw and relay halves above.
    int (*run)(s_bench_t *bench, const struct s_scenario_t *scenario);
} s_scenario_t;

//  Settings from the command line, and what scenarios set up.
struct s_bench_t {
    const char *relay;
    const char *ctl;
    const char *scenario; //  a scenario's name, or "all"
    evr_ack_point_t ack;  //  the client's ack point in relay halves
    const char *acks_on;  //  acks: the scenario whose transport it uses
    size_t n;
    int runs;
    int port_base;
    int amqp_given; //  --amqp-port, 0 = start our own broker
    bool verbose;
    char ingest[64];        //  the relay in use: the plain one unless curve
    char control[64];       //  switched to its CURVE relay
    pid_t relay_pid;        //  the relay in use
    const char *cert;       //  the relay in use wants CURVE: our secret cert
    const char *server_key; //  and its public certificate; NULL = plain
    void *zmq_ctx;          //  zmq, curve: the bench's context
    int amqp_port;          //  rabbitmq: the broker in use
    bool amqp_declared;     //  rabbitmq: we declared the bench queue
    s_broker_t *broker;     //  rabbitmq: the broker we started, or NULL
    s_curve_t *curve;       //  curve: its relay, keys and files, or NULL
};

//  One sink: a receiving end of the scenario's transport and what it
//  counted. Its thread writes the atomics; the main thread reads them
//  while waiting and everything after the join.
struct s_sink_t {
    const s_scenario_t *scenario;
    char socket[128];             //  subscriber socket reaching this sink
    int fd;                       //  udp: the socket, or -1
    uint16_t port;                //  udp: its port
    void *zsock;                  //  zmq: the PULL socket
    char endpoint[64];            //  zmq: where it is bound
    amqp_connection_state_t amqp; //  rabbitmq: the consumer's connection
    bool opened;                  //  scenario->open succeeded
    size_t n;                     //  valid seqs are 1..n
    bool latency;                 //  record latency = receive - ts
    uint64_t *bitmap;             //  seqs seen
    int64_t *lat_us;              //  one latency per first-seen seq
    size_t lat_count;
    atomic_uint_fast64_t messages;  //  everything received
    atomic_uint_fast64_t unique;    //  distinct valid seqs
    atomic_uint_fast64_t dups;      //  valid seqs seen again
    atomic_uint_fast64_t invalid;   //  no/out-of-range seq (warm-up: 0)
    atomic_int_fast64_t last_rx_us; //  monotonic, last new seq
    atomic_bool stop;
    pthread_t thread;
    bool running; //  thread not joined yet
    char (*bufs)[S_SINK_DGRAM + 1];
};

//  What one half of a run measured, over all its sinks.
typedef struct {
    double eps;                     //  deliveries per second
    uint64_t received;              //  distinct (sink, seq) deliveries
    uint64_t per_sink[S_MAX_SINKS]; //  distinct seqs per sink
    uint64_t lost;                  //  expected - received
    uint64_t dup;                   //  seqs a sink got again
} s_half_t;

//  What one run measured.
typedef struct {
    s_half_t raw;
    s_half_t relay;
    double p50_us; //  relay latency
    double p99_us;
    uint64_t dropped; //  libevrelay queue drops
    uint64_t resent;
} s_result_t;

//  What one relay half measured.
typedef struct {
    s_half_t half;
    double p50_us, p99_us;
    uint64_t dropped, resent;
    //  CPU time (user + system) per event raised, us, from the first
    //  raise until the sinks are done: of the relay, and of the bench's
    //  own process (the raising thread, libevrelay's threads, the sinks)
    double relay_cpu_us, bench_cpu_us;
} s_relay_out_t;

//  The acks scenario: one relay half per ack point, indexed by
//  evr_ack_point_t.
#define S_ACK_POINTS 3
typedef struct {
    s_relay_out_t by_point[S_ACK_POINTS];
} s_acks_result_t;

//  A private rabbitmq-server: its files, ports, environment, processes.
struct s_broker_t {
    char dir[64]; //  temporary: HOME, mnesia, logs, config
    char server[PATH_MAX];
    char ctl[PATH_MAX];
    char epmd[PATH_MAX];
    char node[64];
    char epmd_arg[16];
    int amqp_port;
    int dist_port;
    int epmd_port;
    char *vars[S_BROKER_VARS]; //  NAME=value, owned
    size_t var_count;
    char **env;       //  environ with vars; the array is owned
    pid_t server_pid; //  the rabbitmq-server script
    pid_t beam_pid;   //  the Erlang VM it runs (its pid file)
    pid_t epmd_pid;   //  our own epmd on epmd_port
    bool verbose;
};

//  The curve scenario: its CURVE relay with the certificates made for it,
//  the plain relay's endpoints while the CURVE one is in use, and the
//  raw DEALER -> ROUTER pair's key pairs (Z85).
struct s_curve_t {
    char dir[64];           //  temporary: DIR/relay.cert{,_secret}
    char clients[96];       //  DIR/clients: producers and operators
    char relay_cert[160];   //  the relay's secret certificate
    char relay_public[160]; //  its public one (the clients' server key)
    char client_cert[160];  //  the bench's secret certificate
    char ingest[64];        //  the CURVE relay's endpoints
    char control[64];
    char plain_ingest[64]; //  the plain relay's
    char plain_control[64];
    pid_t plain_pid;
    pid_t relay_pid;
    bool raw_curve; //  the raw pair being measured uses CURVE
    char server_public[41], server_secret[41]; //  raw: the ROUTER's keys
    char client_public[41], client_secret[41]; //  raw: the DEALER's keys
};

//  What one run of the curve scenario measured: the relay halves (to the
//  udp sink), the ingest halves (no subscriber, until acked) and the raw
//  ZeroMQ halves, each [0] plain and [1] CURVE.
typedef struct {
    s_relay_out_t relay[2];
    s_relay_out_t ingest[2];
    s_half_t zmq[2];
} s_curve_result_t;

//  The curve scenario's halves, in the order of a run that rotates.
#define S_CURVE_HALVES 6

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
//  CPU time (user + system, all threads) that process pid has used so far,
//  us, from /proc/PID/stat; -1 when it cannot be read.

static int64_t s_cpu_us(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (!file)
        return -1;
    bool read = fgets(line, sizeof(line), file) != NULL;
    fclose(file);
    //  fields 14 and 15 (utime, stime) count from the ')' ending field 2
    char *at = read ? strrchr(line, ')') : NULL;
    unsigned long long utime, stime;
    if (!at ||
        sscanf(at + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2)
        return -1;
    long ticks = sysconf(_SC_CLK_TCK);
    return (int64_t)((utime + stime) * 1000000ULL /
                     (unsigned long long)(ticks > 0 ? ticks : 100));
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
//  Start a program with argv and env (NULL = ours), stdout and stderr to
//  /dev/null unless verbose. The child gets SIGTERM if the bench dies.
//  Returns its pid or -1.

static pid_t s_spawn(char *const argv[], char *const env[], bool verbose)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        if (!verbose) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        close(null);
    }
    execve(argv[0], argv, env ? env : environ);
    _exit(127);
}

//  --------------------------------------------------------------------------
//  Reap child pid, waiting at most timeout_ms (< 0: no limit). Sets
//  *status when given. Returns 0 when it is gone, -1 when still running.

static int s_wait_pid(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = s_mono_us() + (int64_t)timeout_ms * 1000;
    int ignored;
    if (!status)
        status = &ignored;
    *status = -1;
    while (true) {
        pid_t got = waitpid(pid, status, timeout_ms < 0 ? 0 : WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR))
            return 0;
        if (timeout_ms >= 0 && s_mono_us() > deadline)
            return -1;
        if (got == 0)
            s_sleep_ms(10);
    }
}

//  --------------------------------------------------------------------------
//  Stop child pid: SIGTERM, then SIGKILL after grace_ms; reap it.

static void s_stop_pid(pid_t pid, int grace_ms)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    if (s_wait_pid(pid, grace_ms, NULL) == 0)
        return;
    kill(pid, SIGKILL);
    s_wait_pid(pid, -1, NULL);
}

//  --------------------------------------------------------------------------
//  Run a program to the end, at most timeout_ms (then it is killed).
//  Returns its exit status, or -1.

static int s_run(char *const argv[], char *const env[], bool verbose,
                 int timeout_ms)
{
    pid_t pid = s_spawn(argv, env, verbose);
    if (pid < 0)
        return -1;
    int status;
    if (s_wait_pid(pid, timeout_ms, &status)) {
        fprintf(stderr, "evrelay-bench: %s: no answer in %d ms, killed\n",
                argv[0], timeout_ms);
        kill(pid, SIGKILL);
        s_wait_pid(pid, -1, NULL);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

//  ==========================================================================
//  Sinks: counting, the thread, waiting. Transport parts are the
//  scenario's.

//  --------------------------------------------------------------------------
//  Count one received payload of len bytes (data has room for a NUL).

static void s_sink_count(s_sink_t *self, char *data, size_t len, int64_t now,
                         int64_t real_now)
{
    data[len] = '\0';
    atomic_fetch_add_explicit(&self->messages, 1, memory_order_relaxed);
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
    atomic_store_explicit(&self->last_rx_us, now, memory_order_relaxed);
    atomic_fetch_add_explicit(&self->unique, 1, memory_order_release);
}

//  --------------------------------------------------------------------------
//  Sink thread: receive with the scenario's recv until told to stop, or
//  until recv gives up.

static void *s_sink_thread(void *arg)
{
    s_sink_t *self = arg;
    while (!atomic_load(&self->stop)) {
        if (self->scenario->recv(self))
            break;
    }
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
//  Stop the sink's thread, close its receiving end and free it. Safe on
//  NULL.

static void s_sink_destroy(s_sink_t **self_p)
{
    if (!*self_p)
        return;
    s_sink_t *self = *self_p;
    s_sink_stop(self);
    if (self->opened)
        self->scenario->close(self);
    free(self->bitmap);
    free(self->lat_us);
    free(self->bufs);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Create a sink of the scenario expecting seqs 1..n and start its
//  thread. NULL on failure (said why).

static s_sink_t *s_sink_new(s_bench_t *bench, const s_scenario_t *scenario,
                            bool latency)
{
    s_sink_t *self = calloc(1, sizeof(s_sink_t));
    if (!self)
        return NULL;
    self->scenario = scenario;
    self->fd = -1;
    self->n = bench->n;
    self->latency = latency;
    self->bitmap = calloc(bench->n / 64 + 1, sizeof(uint64_t));
    self->lat_us = latency ? malloc(bench->n * sizeof(int64_t)) : NULL;
    self->bufs = malloc(S_SINK_BATCH * sizeof(*self->bufs));
    if (!self->bitmap || (latency && !self->lat_us) || !self->bufs) {
        fprintf(stderr, "evrelay-bench: out of memory\n");
        goto fail;
    }
    if (scenario->open(bench, self))
        goto fail;
    self->opened = true;
    if (pthread_create(&self->thread, NULL, s_sink_thread, self))
        goto fail;
    self->running = true;
    return self;
fail:
    s_sink_destroy(&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Create the scenario's sinks into sinks[0..scenario->sinks). Returns 0,
//  or -1 with none left.

static int s_sinks_new(s_bench_t *bench, const s_scenario_t *scenario,
                       bool latency, s_sink_t **sinks)
{
    for (int i = 0; i < scenario->sinks; i++) {
        sinks[i] = s_sink_new(bench, scenario, latency);
        if (!sinks[i]) {
            while (i-- > 0)
                s_sink_destroy(&sinks[i]);
            return -1;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Destroy count sinks.

static void s_sinks_destroy(s_sink_t **sinks, int count)
{
    for (int i = 0; i < count; i++)
        s_sink_destroy(&sinks[i]);
}

//  --------------------------------------------------------------------------
//  Wait until every sink has all n seqs, or nothing new arrived for 1 s
//  after both the sinks' last arrival and since_us (when sending ended).

static void s_sinks_wait(s_sink_t **sinks, int count, int64_t since_us)
{
    int64_t start = s_mono_us();
    uint64_t expected = (uint64_t)sinks[0]->n * (uint64_t)count;
    while (!s_interrupted) {
        uint64_t got = 0;
        int64_t last = since_us;
        for (int i = 0; i < count; i++) {
            got += atomic_load(&sinks[i]->unique);
            int64_t at = atomic_load(&sinks[i]->last_rx_us);
            if (at > last)
                last = at;
        }
        int64_t now = s_mono_us();
        if (got >= expected || now - last > S_QUIET_US ||
            now - start > S_RUN_MAX_US)
            break;
        s_sleep_ms(5);
    }
}

//  --------------------------------------------------------------------------
//  Wait until every sink received something (the warm-up event), at most
//  S_WARMUP_MS. Returns 0, or -1 when one did not.

static int s_sinks_warm(s_sink_t **sinks, int count)
{
    int64_t deadline = s_mono_us() + S_WARMUP_MS * 1000LL;
    for (int i = 0; i < count; i++) {
        while (atomic_load(&sinks[i]->messages) == 0) {
            if (s_interrupted || s_mono_us() > deadline) {
                fprintf(stderr,
                        "evrelay-bench: %s got no warm-up event in %d ms\n",
                        sinks[i]->socket, S_WARMUP_MS);
                return -1;
            }
            s_sleep_ms(5);
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Stop the sinks and sum up what they got into half: rate from first_us
//  to the last arrival at any sink.

static void s_sinks_measure(s_sink_t **sinks, int count, int64_t first_us,
                            s_half_t *half)
{
    int64_t last = 0;
    memset(half, 0, sizeof(*half));
    for (int i = 0; i < count; i++) {
        s_sink_stop(sinks[i]);
        half->per_sink[i] = atomic_load(&sinks[i]->unique);
        half->received += half->per_sink[i];
        half->dup += atomic_load(&sinks[i]->dups);
        int64_t at = atomic_load(&sinks[i]->last_rx_us);
        if (at > last)
            last = at;
    }
    half->lost = (uint64_t)sinks[0]->n * (uint64_t)count - half->received;
    int64_t span = last - first_us;
    half->eps = span > 0 ? (double)half->received * 1e6 / (double)span : 0;
}

//  ==========================================================================
//  Payloads.

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

//  --------------------------------------------------------------------------
//  Free the raw payloads. Safe on NULL.

static void s_payloads_destroy(s_payloads_t **self_p)
{
    if (!*self_p)
        return;
    free((*self_p)->data);
    free((*self_p)->lens);
    free(*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Pre-build the n raw payloads, seqs 1..n. NULL when out of memory.

static s_payloads_t *s_payloads_new(size_t n)
{
    s_payloads_t *self = calloc(1, sizeof(s_payloads_t));
    char *pad = s_pad_new(n);
    if (self) {
        self->n = n;
        self->data = malloc(n * S_PAYLOAD_SLOT);
        self->lens = malloc(n * sizeof(int));
    }
    if (!self || !self->data || !self->lens || !pad) {
        s_payloads_destroy(&self);
        free(pad);
        return NULL;
    }
    int64_t ts = s_real_us();
    for (size_t i = 0; i < n; i++)
        self->lens[i] = s_payload(self->data + i * S_PAYLOAD_SLOT,
                                  S_PAYLOAD_SLOT, i + 1, ts, pad);
    free(pad);
    return self;
}

//  ==========================================================================
//  udp and parallel: UDP sinks, sendto() baseline.

//  --------------------------------------------------------------------------
//  A UDP socket bound to 127.0.0.1 (ephemeral port) with an S_SINK_RCVBUF
//  receive buffer (forced when we may). Sets *rcvbuf to what the kernel
//  reports. Returns the descriptor or -1.

static int s_udp_socket(int *rcvbuf)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int size = S_SINK_RCVBUF;
    if (geteuid() != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    socklen_t optlen = sizeof(*rcvbuf);
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf, &optlen);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
        close(fd);
        return -1;
    }
    return fd;
}

//  --------------------------------------------------------------------------
//  udp: open the sink's socket; its subscriber socket is
//  udp:127.0.0.1:PORT.

static int s_udp_open(s_bench_t *bench, s_sink_t *sink)
{
    int rcvbuf;
    sink->fd = s_udp_socket(&rcvbuf);
    struct sockaddr_in addr;
    socklen_t addrlen = sizeof(addr);
    if (sink->fd < 0 ||
        getsockname(sink->fd, (struct sockaddr *)&addr, &addrlen)) {
        fprintf(stderr, "evrelay-bench: udp sink: %s\n", strerror(errno));
        if (sink->fd >= 0)
            close(sink->fd);
        return -1;
    }
    struct timeval tv = {0, S_SINK_POLL_MS * 1000};
    setsockopt(sink->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sink->port = ntohs(addr.sin_port);
    snprintf(sink->socket, sizeof(sink->socket), "udp:127.0.0.1:%u",
             sink->port);
    return 0;
}

//  --------------------------------------------------------------------------
//  udp: receive one batch of datagrams and count them.

static int s_udp_recv(s_sink_t *self)
{
    struct mmsghdr msgs[S_SINK_BATCH];
    struct iovec iovs[S_SINK_BATCH];
    for (int i = 0; i < S_SINK_BATCH; i++) {
        iovs[i].iov_base = self->bufs[i];
        iovs[i].iov_len = S_SINK_DGRAM;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(self->fd, msgs, S_SINK_BATCH, MSG_WAITFORONE, NULL);
    if (got <= 0)
        return 0; //  timeout (to check stop) or EINTR
    int64_t now = s_mono_us(), real_now = s_real_us();
    for (int i = 0; i < got; i++)
        s_sink_count(self, self->bufs[i], msgs[i].msg_len, now, real_now);
    return 0;
}

//  --------------------------------------------------------------------------
//  udp: close the sink's socket.

static void s_udp_close(s_sink_t *sink)
{
    close(sink->fd);
}

//  --------------------------------------------------------------------------
//  udp: sendto() every payload to every sink in turn (payload 1 to each
//  sink, then payload 2, ...), from one socket, as fast as possible.

static int s_udp_raw(s_bench_t *bench, s_sink_t **sinks, int count,
                     const s_payloads_t *payloads, int64_t *first_send_us)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "evrelay-bench: raw udp: %s\n", strerror(errno));
        return -1;
    }
    struct sockaddr_in addrs[S_MAX_SINKS];
    for (int k = 0; k < count; k++)
        addrs[k] =
            (struct sockaddr_in){.sin_family = AF_INET,
                                 .sin_port = htons(sinks[k]->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint64_t errors = 0;
    *first_send_us = s_mono_us();
    for (size_t i = 0; i < payloads->n && !s_interrupted; i++) {
        for (int k = 0; k < count; k++) {
            if (sendto(fd, payloads->data + i * S_PAYLOAD_SLOT,
                       (size_t)payloads->lens[i], 0,
                       (struct sockaddr *)&addrs[k], sizeof(addrs[k])) == -1)
                errors++;
        }
    }
    close(fd);
    if (errors)
        fprintf(stderr, "evrelay-bench: raw: %" PRIu64 " sendto errors\n",
                errors);
    return 0;
}

//  ==========================================================================
//  zmq: a PULL sink, a PUSH baseline.

//  --------------------------------------------------------------------------
//  zmq: the bench's own ZeroMQ context, with two I/O threads so the raw
//  PUSH and the PULL sink do not share one (on the relay path the relay
//  has its own): the raw baseline is then a ceiling, not a handicap.

static int s_zmq_setup(s_bench_t *bench)
{
    bench->zmq_ctx = zmq_ctx_new();
    if (bench->zmq_ctx)
        zmq_ctx_set(bench->zmq_ctx, ZMQ_IO_THREADS, S_ZMQ_IO_THREADS);
    if (!bench->zmq_ctx) {
        fprintf(stderr, "evrelay-bench: zmq_ctx_new: %s\n",
                zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  zmq: terminate the context (every socket is closed by now).

static void s_zmq_teardown(s_bench_t *bench)
{
    if (bench->zmq_ctx)
        zmq_ctx_term(bench->zmq_ctx);
    bench->zmq_ctx = NULL;
}

//  --------------------------------------------------------------------------
//  zmq: a PULL socket bound to tcp://127.0.0.1 (ephemeral port); its
//  subscriber socket is zmq:push:tcp://127.0.0.1:PORT.

static int s_zmq_open(s_bench_t *bench, s_sink_t *sink)
{
    sink->zsock = zmq_socket(bench->zmq_ctx, ZMQ_PULL);
    int linger = 0, timeout = S_SINK_POLL_MS;
    size_t size = sizeof(sink->endpoint);
    if (!sink->zsock ||
        zmq_setsockopt(sink->zsock, ZMQ_LINGER, &linger, sizeof(linger)) ||
        zmq_setsockopt(sink->zsock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout)) ||
        zmq_bind(sink->zsock, "tcp://127.0.0.1:*") ||
        zmq_getsockopt(sink->zsock, ZMQ_LAST_ENDPOINT, sink->endpoint, &size)) {
        fprintf(stderr, "evrelay-bench: zmq sink: %s\n",
                zmq_strerror(zmq_errno()));
        if (sink->zsock)
            zmq_close(sink->zsock);
        return -1;
    }
    snprintf(sink->socket, sizeof(sink->socket), "zmq:push:%s", sink->endpoint);
    return 0;
}

//  Count a payload of len bytes zmq_recv left in bufs[0] (len < 0: the
//  receive failed; a timeout is not an error).

static int s_zmq_count(s_sink_t *self, int len, const char *what)
{
    if (len < 0) {
        if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
            return 0; //  timeout (to check stop)
        fprintf(stderr, "evrelay-bench: %s sink: %s\n", what,
                zmq_strerror(zmq_errno()));
        return -1;
    }
    if (len > S_SINK_DGRAM)
        len = S_SINK_DGRAM; //  zmq_recv truncated it
    s_sink_count(self, self->bufs[0], (size_t)len, s_mono_us(), s_real_us());
    return 0;
}

//  --------------------------------------------------------------------------
//  zmq: receive one message and count it.

static int s_zmq_recv(s_sink_t *self)
{
    int len = zmq_recv(self->zsock, self->bufs[0], S_SINK_DGRAM, 0);
    return s_zmq_count(self, len, "zmq");
}

//  --------------------------------------------------------------------------
//  zmq: close the PULL socket.

static void s_zmq_close(s_sink_t *sink)
{
    zmq_close(sink->zsock);
}

//  --------------------------------------------------------------------------
//  zmq: a PUSH socket of the bench connects to the (one) sink's PULL and
//  sends every payload, blocking when the pipe is full. Closing it leaves
//  what is still queued to ZeroMQ's I/O thread (linger).

static int s_zmq_raw(s_bench_t *bench, s_sink_t **sinks, int count,
                     const s_payloads_t *payloads, int64_t *first_send_us)
{
    void *push = zmq_socket(bench->zmq_ctx, ZMQ_PUSH);
    int linger = S_ZMQ_LINGER_MS, sndtimeo = S_ZMQ_SNDTIMEO_MS;
    if (!push || zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof(linger)) ||
        zmq_setsockopt(push, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) ||
        zmq_connect(push, sinks[0]->endpoint)) {
        fprintf(stderr, "evrelay-bench: raw zmq: %s\n",
                zmq_strerror(zmq_errno()));
        if (push)
            zmq_close(push);
        return -1;
    }
    int rc = 0;
    *first_send_us = s_mono_us();
    for (size_t i = 0; i < payloads->n && !s_interrupted; i++) {
        if (zmq_send(push, payloads->data + i * S_PAYLOAD_SLOT,
                     (size_t)payloads->lens[i], 0) < 0) {
            fprintf(stderr, "evrelay-bench: raw zmq: send %zu: %s\n", i + 1,
                    zmq_strerror(zmq_errno()));
            rc = -1;
            break;
        }
    }
    zmq_close(push);
    return rc;
}

//  ==========================================================================
//  curve: a ROUTER sink, a DEALER baseline, plain or CURVE (the bench's
//  own keys, no ZAP handler: libzmq then accepts every client key).

//  --------------------------------------------------------------------------
//  curve: a ROUTER bound to tcp://127.0.0.1 (ephemeral port), a CURVE
//  server when the raw pair being measured uses CURVE.

static int s_router_open(s_bench_t *bench, s_sink_t *sink)
{
    s_curve_t *curve = bench->curve;
    sink->zsock = zmq_socket(bench->zmq_ctx, ZMQ_ROUTER);
    int linger = 0, timeout = S_SINK_POLL_MS, server = 1;
    size_t size = sizeof(sink->endpoint);
    if (!sink->zsock ||
        zmq_setsockopt(sink->zsock, ZMQ_LINGER, &linger, sizeof(linger)) ||
        zmq_setsockopt(sink->zsock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout)) ||
        (curve->raw_curve && (zmq_setsockopt(sink->zsock, ZMQ_CURVE_SERVER,
                                             &server, sizeof(server)) ||
                              zmq_setsockopt(sink->zsock, ZMQ_CURVE_SECRETKEY,
                                             curve->server_secret, 40))) ||
        zmq_bind(sink->zsock, "tcp://127.0.0.1:*") ||
        zmq_getsockopt(sink->zsock, ZMQ_LAST_ENDPOINT, sink->endpoint, &size)) {
        fprintf(stderr, "evrelay-bench: router sink: %s\n",
                zmq_strerror(zmq_errno()));
        if (sink->zsock)
            zmq_close(sink->zsock);
        return -1;
    }
    snprintf(sink->socket, sizeof(sink->socket), "%s ROUTER %s",
             curve->raw_curve ? "CURVE" : "plain", sink->endpoint);
    return 0;
}

//  --------------------------------------------------------------------------
//  curve: receive one message (the peer's routing id, then the payload)
//  and count its payload.

static int s_router_recv(s_sink_t *self)
{
    char id[256];
    int len = zmq_recv(self->zsock, id, sizeof(id), 0);
    if (len >= 0)
        len = zmq_recv(self->zsock, self->bufs[0], S_SINK_DGRAM, 0);
    return s_zmq_count(self, len, "router");
}

//  --------------------------------------------------------------------------
//  curve: a DEALER of the bench (a CURVE client when the pair uses CURVE)
//  connects to the (one) sink's ROUTER, sends a warm-up message and waits
//  until it arrived (the handshake is not timed), then sends every
//  payload as one message, blocking when the pipe is full.

static int s_dealer_raw(s_bench_t *bench, s_sink_t **sinks, int count,
                        const s_payloads_t *payloads, int64_t *first_send_us)
{
    s_curve_t *curve = bench->curve;
    void *dealer = zmq_socket(bench->zmq_ctx, ZMQ_DEALER);
    int linger = S_ZMQ_LINGER_MS, sndtimeo = S_ZMQ_SNDTIMEO_MS;
    if (!dealer ||
        zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger)) ||
        zmq_setsockopt(dealer, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) ||
        (curve->raw_curve && (zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY,
                                             curve->server_public, 40) ||
                              zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY,
                                             curve->client_public, 40) ||
                              zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY,
                                             curve->client_secret, 40))) ||
        zmq_connect(dealer, sinks[0]->endpoint)) {
        fprintf(stderr, "evrelay-bench: raw dealer: %s\n",
                zmq_strerror(zmq_errno()));
        if (dealer)
            zmq_close(dealer);
        return -1;
    }
    char warm[S_PAYLOAD_SLOT];
    int warm_len = s_payload(warm, sizeof(warm), 0, 0, "");
    int rc = -1;
    if (zmq_send(dealer, warm, (size_t)warm_len, 0) < 0 ||
        s_sinks_warm(sinks, count))
        goto done;
    rc = 0;
    *first_send_us = s_mono_us();
    for (size_t i = 0; i < payloads->n && !s_interrupted; i++) {
        if (zmq_send(dealer, payloads->data + i * S_PAYLOAD_SLOT,
                     (size_t)payloads->lens[i], 0) < 0) {
            fprintf(stderr, "evrelay-bench: raw dealer: send %zu: %s\n", i + 1,
                    zmq_strerror(zmq_errno()));
            rc = -1;
            break;
        }
    }
done:
    zmq_close(dealer);
    return rc;
}

//  The raw pair as a scenario of one sink, for s_half_raw.
static const s_scenario_t s_router_pair = {.name = "curve-raw",
                                           .sinks = 1,
                                           .open = s_router_open,
                                           .recv = s_router_recv,
                                           .close = s_zmq_close,
                                           .raw = s_dealer_raw};

//  ==========================================================================
//  rabbitmq: AMQP helpers.

//  --------------------------------------------------------------------------
//  Check an AMQP RPC reply. Returns 0 when normal, else says what failed
//  and returns -1.

static int s_amqp_check(amqp_rpc_reply_t reply, const char *what)
{
    if (reply.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    const char *why = "no reply";
    char text[256] = "";
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        why = amqp_error_string2(reply.library_error);
    else if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        amqp_bytes_t reason = amqp_empty_bytes;
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
            reason =
                ((amqp_connection_close_t *)reply.reply.decoded)->reply_text;
        else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
            reason = ((amqp_channel_close_t *)reply.reply.decoded)->reply_text;
        snprintf(text, sizeof(text), "broker: %.*s", (int)reason.len,
                 (const char *)reason.bytes);
        why = text;
    }
    fprintf(stderr, "evrelay-bench: amqp %s: %s\n", what, why);
    return -1;
}

//  --------------------------------------------------------------------------
//  Connect to the broker at 127.0.0.1:port as guest on vhost / and open
//  channel 1. Returns the connection, or NULL (said why).

static amqp_connection_state_t s_amqp_connect(int port)
{
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = conn ? amqp_tcp_socket_new(conn) : NULL;
    if (!sock) {
        fprintf(stderr, "evrelay-bench: amqp: out of memory\n");
        goto fail;
    }
    int status = amqp_socket_open(sock, "127.0.0.1", port);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "evrelay-bench: amqp connect 127.0.0.1:%d: %s\n", port,
                amqp_error_string2(status));
        goto fail;
    }
    if (s_amqp_check(amqp_login(conn, "/", 0, S_AMQP_FRAME_MAX, 0,
                                AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
                     "login"))
        goto fail;
    amqp_channel_open(conn, 1);
    if (s_amqp_check(amqp_get_rpc_reply(conn), "channel.open"))
        goto fail;
    return conn;
fail:
    if (conn)
        amqp_destroy_connection(conn);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Close channel 1 and the connection, free it and NULL the pointer. Safe
//  on NULL.

static void s_amqp_close(amqp_connection_state_t *conn_p)
{
    if (!*conn_p)
        return;
    amqp_channel_close(*conn_p, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(*conn_p, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(*conn_p);
    *conn_p = NULL;
}

//  --------------------------------------------------------------------------
//  Declare (declare true) or delete the bench queue. Returns 0 or -1.

static int s_amqp_queue(int port, bool declare)
{
    amqp_connection_state_t conn = s_amqp_connect(port);
    if (!conn)
        return -1;
    amqp_bytes_t queue = amqp_cstring_bytes(S_AMQP_QUEUE);
    if (declare)
        amqp_queue_declare(conn, 1, queue, 0, 0, 0, 0, amqp_empty_table);
    else
        amqp_queue_delete(conn, 1, queue, 0, 0);
    int rc = s_amqp_check(amqp_get_rpc_reply(conn),
                          declare ? "queue.declare" : "queue.delete");
    s_amqp_close(&conn);
    return rc;
}

//  ==========================================================================
//  rabbitmq: a private broker.

//  --------------------------------------------------------------------------
//  Find an executable: dir/name when dir has it, else the first name in
//  PATH. Writes its path into path. Returns 0 or -1.

static int s_find_program(const char *dir, const char *name, char *path,
                          size_t size)
{
    if (dir) {
        snprintf(path, size, "%s/%s", dir, name);
        if (access(path, X_OK) == 0)
            return 0;
    }
    const char *env = getenv("PATH");
    char *dirs = strdup(env ? env : "/usr/bin:/bin");
    char *save = NULL;
    int rc = -1;
    for (char *at = dirs ? strtok_r(dirs, ":", &save) : NULL; at && rc;
         at = strtok_r(NULL, ":", &save)) {
        snprintf(path, size, "%s/%s", at, name);
        if (access(path, X_OK) == 0)
            rc = 0;
    }
    free(dirs);
    return rc;
}

//  --------------------------------------------------------------------------
//  Write text to a new file at dir/name. Returns 0 or -1.

static int s_write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    if (!file)
        return -1;
    int rc = fputs(text, file) < 0 ? -1 : 0;
    return fclose(file) || rc ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  nftw callback: remove one file or (emptied) directory.

static int s_remove_entry(const char *path, const struct stat *st, int flag,
                          struct FTW *ftw)
{
    remove(path);
    return 0;
}

//  --------------------------------------------------------------------------
//  Find count distinct free TCP ports on 127.0.0.1 (bound together, then
//  released). Returns 0 or -1.

static int s_free_ports(int *ports, int count)
{
    int fds[8], rc = 0;
    for (int i = 0; i < count; i++) {
        struct sockaddr_in addr = {.sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(addr);
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&addr, len) ||
            getsockname(fds[i], (struct sockaddr *)&addr, &len))
            rc = -1;
        ports[i] = ntohs(addr.sin_port);
    }
    for (int i = 0; i < count; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Whether something accepts TCP connections on 127.0.0.1:port.

static bool s_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool open =
        fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return open;
}

//  --------------------------------------------------------------------------
//  Add NAME=value (printf-style) to the broker's environment. Returns 0
//  or -1.

static int s_broker_var(s_broker_t *self, const char *format, ...)
{
    if (self->var_count == S_BROKER_VARS)
        return -1;
    va_list args;
    va_start(args, format);
    int rc = vasprintf(&self->vars[self->var_count], format, args);
    va_end(args);
    if (rc < 0)
        return -1;
    self->var_count++;
    return 0;
}

//  --------------------------------------------------------------------------
//  Build the broker's environment: ours, with every name in vars
//  replaced by the var. Returns 0 or -1.

static int s_broker_env(s_broker_t *self)
{
    size_t count = 0;
    while (environ[count])
        count++;
    self->env = calloc(count + self->var_count + 1, sizeof(char *));
    if (!self->env)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        size_t name = strcspn(environ[i], "=");
        bool replaced = false;
        for (size_t j = 0; j < self->var_count && !replaced; j++)
            replaced = strncmp(environ[i], self->vars[j], name + 1) == 0;
        if (!replaced)
            self->env[at++] = environ[i];
    }
    for (size_t j = 0; j < self->var_count; j++)
        self->env[at++] = self->vars[j];
    return 0;
}

//  --------------------------------------------------------------------------
//  Run rabbitmqctl -n NODE command against our broker. Returns its exit
//  status.

static int s_broker_ctl(s_broker_t *self, const char *command)
{
    char *argv[] = {self->ctl, "-n", self->node, (char *)command, NULL};
    return s_run(argv, self->env, self->verbose, S_BROKER_CTL_MS);
}

//  --------------------------------------------------------------------------
//  The pid of the broker's Erlang VM from its pid file, or -1.

static pid_t s_broker_beam_pid(s_broker_t *self)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/rabbit.pid", self->dir);
    FILE *file = fopen(path, "r");
    int pid = -1;
    if (file) {
        if (fscanf(file, "%d", &pid) != 1)
            pid = -1;
        fclose(file);
    }
    return pid > 1 ? pid : -1;
}

//  --------------------------------------------------------------------------
//  Stop our broker (rabbitmqctl stop, then signals by pid), then its
//  epmd; remove its directory; free it and NULL the pointer. Safe on NULL.

static void s_broker_destroy(s_broker_t **self_p)
{
    if (!*self_p)
        return;
    s_broker_t *self = *self_p;
    if (self->beam_pid <= 0 && self->dir[0])
        self->beam_pid = s_broker_beam_pid(self);
    if (self->server_pid > 0) {
        if (s_broker_ctl(self, "stop") != 0)
            fprintf(stderr, "evrelay-bench: rabbitmqctl stop failed; "
                            "signalling the broker\n");
        if (s_wait_pid(self->server_pid, S_BROKER_STOP_MS, NULL))
            s_stop_pid(self->server_pid, S_STOP_GRACE_MS);
    }
    //  The VM is the script's child: normally gone with it
    if (self->beam_pid > 0 && kill(self->beam_pid, 0) == 0) {
        kill(self->beam_pid, SIGKILL);
        s_sleep_ms(100);
    }
    s_stop_pid(self->epmd_pid, S_STOP_GRACE_MS);
    if (self->dir[0])
        nftw(self->dir, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < self->var_count; i++)
        free(self->vars[i]);
    free(self->env);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Make the broker's temporary directory with its config files, and its
//  environment: node name, ports, loopback only, every path in the
//  directory. Returns 0 or -1.

static int s_broker_prepare(s_broker_t *self)
{
    int ports[3];
    snprintf(self->dir, sizeof(self->dir), "/tmp/evrelay-bench-rmq.XXXXXX");
    if (!mkdtemp(self->dir)) {
        self->dir[0] = '\0';
        return -1;
    }
    char sub[PATH_MAX];
    snprintf(sub, sizeof(sub), "%s/mnesia", self->dir);
    if (mkdir(sub, 0700))
        return -1;
    snprintf(sub, sizeof(sub), "%s/log", self->dir);
    if (mkdir(sub, 0700) ||
        s_write_file(self->dir, "rabbitmq.conf",
                     "# evrelay-bench: a private broker on loopback\n") ||
        s_write_file(self->dir, "rabbitmq-env.conf", "") ||
        s_write_file(self->dir, "enabled_plugins", "[].\n") ||
        s_free_ports(ports, 3))
        return -1;
    self->amqp_port = ports[0];
    self->dist_port = ports[1];
    self->epmd_port = ports[2];
    snprintf(self->epmd_arg, sizeof(self->epmd_arg), "%d", self->epmd_port);
    snprintf(self->node, sizeof(self->node), "evrbench%d@localhost",
             (int)getpid());
    const char *d = self->dir;
    if (s_broker_var(self, "HOME=%s", d) ||
        s_broker_var(self, "RABBITMQ_NODENAME=%s", self->node) ||
        s_broker_var(self, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1") ||
        s_broker_var(self, "RABBITMQ_NODE_PORT=%d", self->amqp_port) ||
        s_broker_var(self, "RABBITMQ_DIST_PORT=%d", self->dist_port) ||
        s_broker_var(self, "ERL_EPMD_PORT=%d", self->epmd_port) ||
        s_broker_var(self, "ERL_EPMD_ADDRESS=127.0.0.1") ||
        s_broker_var(self, "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel "
                           "inet_dist_use_interface {127,0,0,1}") ||
        s_broker_var(self, "RABBITMQ_MNESIA_BASE=%s/mnesia", d) ||
        s_broker_var(self, "RABBITMQ_LOG_BASE=%s/log", d) ||
        s_broker_var(self, "RABBITMQ_CONFIG_FILE=%s/rabbitmq.conf", d) ||
        s_broker_var(self, "RABBITMQ_ADVANCED_CONFIG_FILE=%s/advanced.config",
                     d) ||
        s_broker_var(self, "RABBITMQ_CONF_ENV_FILE=%s/rabbitmq-env.conf", d) ||
        s_broker_var(self, "RABBITMQ_ENABLED_PLUGINS_FILE=%s/enabled_plugins",
                     d) ||
        s_broker_var(self, "RABBITMQ_PID_FILE=%s/rabbit.pid", d))
        return -1;
    return s_broker_env(self);
}

//  --------------------------------------------------------------------------
//  Start a private broker: our own epmd, then rabbitmq-server, and wait
//  until its AMQP port accepts and `rabbitmqctl await_startup` says it is
//  up. NULL on failure; *skip is set when rabbitmq-server is not
//  installed (said so).

static s_broker_t *s_broker_new(s_bench_t *bench, bool *skip)
{
    s_broker_t *self = calloc(1, sizeof(s_broker_t));
    if (!self)
        return NULL;
    self->verbose = bench->verbose;
    if (s_find_program(S_RABBITMQ_LIBEXEC, "rabbitmq-server", self->server,
                       sizeof(self->server))) {
        printf("rabbitmq: skipped: rabbitmq-server is not installed "
               "(apt-get install rabbitmq-server, or give --amqp-port P "
               "for a running broker)\n");
        *skip = true;
        goto fail;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", self->server);
    if (s_find_program(dirname(dir), "rabbitmqctl", self->ctl,
                       sizeof(self->ctl)) ||
        s_find_program(NULL, "epmd", self->epmd, sizeof(self->epmd))) {
        printf("rabbitmq: skipped: rabbitmq-server is there but rabbitmqctl "
               "or epmd is not\n");
        *skip = true;
        goto fail;
    }
    if (s_broker_prepare(self)) {
        fprintf(stderr, "evrelay-bench: rabbitmq: cannot prepare %s: %s\n",
                self->dir, strerror(errno));
        goto fail;
    }
    char *epmd_argv[] = {self->epmd, "-port",     self->epmd_arg,
                         "-address", "127.0.0.1", NULL};
    //  Our own epmd, so the broker neither starts a system-wide one nor
    //  registers with another's
    self->epmd_pid = s_spawn(epmd_argv, self->env, self->verbose);
    int64_t deadline = s_mono_us() + S_BROKER_START_MS * 1000LL;
    while (!s_port_open(self->epmd_port)) {
        bool gone = self->epmd_pid <= 0 ||
                    waitpid(self->epmd_pid, NULL, WNOHANG) == self->epmd_pid;
        if (gone)
            self->epmd_pid = -1;
        if (gone || s_interrupted || s_mono_us() > deadline) {
            fprintf(stderr, "evrelay-bench: %s did not start\n", self->epmd);
            goto fail;
        }
        s_sleep_ms(20);
    }
    char *server_argv[] = {self->server, NULL};
    self->server_pid = s_spawn(server_argv, self->env, self->verbose);
    printf("rabbitmq: starting %s (node %s, amqp 127.0.0.1:%d, dir %s)\n",
           self->server, self->node, self->amqp_port, self->dir);
    fflush(stdout);
    while (self->server_pid > 0 && !s_port_open(self->amqp_port)) {
        int status;
        if (waitpid(self->server_pid, &status, WNOHANG) == self->server_pid) {
            fprintf(stderr, "evrelay-bench: rabbitmq-server exited at start "
                            "(run with -v to see why)\n");
            self->server_pid = -1;
            goto fail;
        }
        if (s_interrupted || s_mono_us() > deadline) {
            fprintf(stderr,
                    "evrelay-bench: rabbitmq-server did not open "
                    "port %d in time\n",
                    self->amqp_port);
            goto fail;
        }
        s_sleep_ms(200);
    }
    if (self->server_pid <= 0 || s_broker_ctl(self, "await_startup")) {
        fprintf(stderr, "evrelay-bench: rabbitmq-server did not start\n");
        goto fail;
    }
    self->beam_pid = s_broker_beam_pid(self);
    return self;
fail:
    s_broker_destroy(&self);
    return NULL;
}

//  ==========================================================================
//  rabbitmq: consumer sink, confirmed-publisher baseline.

//  Publisher confirms seen so far: delivery tag t (1..n) is seq t.
typedef struct {
    uint64_t *bitmap; //  tags confirmed (acked or nacked)
    size_t n;
    size_t low;       //  every tag <= low is confirmed
    size_t confirmed; //  acked + nacked
    size_t nacked;
} s_confirms_t;

//  --------------------------------------------------------------------------
//  rabbitmq: use --amqp-port's broker, or start our own; declare the
//  bench queue.

static int s_rmq_setup(s_bench_t *bench)
{
    bench->amqp_port = bench->amqp_given;
    if (!bench->amqp_given) {
        bool skip = false;
        bench->broker = s_broker_new(bench, &skip);
        if (!bench->broker)
            return skip ? 1 : -1;
        bench->amqp_port = bench->broker->amqp_port;
    }
    if (s_amqp_queue(bench->amqp_port, true))
        return -1;
    bench->amqp_declared = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  rabbitmq: delete the bench queue on a broker we were given; stop our
//  own broker.

static void s_rmq_teardown(s_bench_t *bench)
{
    if (bench->amqp_given && bench->amqp_declared)
        s_amqp_queue(bench->amqp_port, false);
    bench->amqp_declared = false;
    s_broker_destroy(&bench->broker);
}

//  --------------------------------------------------------------------------
//  rabbitmq: the sink's own connection empties the bench queue and
//  consumes it (no-ack). Subscriber socket: rabbitmq:127.0.0.1:PORT/bench.

static int s_rmq_open(s_bench_t *bench, s_sink_t *sink)
{
    sink->amqp = s_amqp_connect(bench->amqp_port);
    if (!sink->amqp)
        return -1;
    amqp_bytes_t queue = amqp_cstring_bytes(S_AMQP_QUEUE);
    amqp_queue_purge(sink->amqp, 1, queue);
    if (s_amqp_check(amqp_get_rpc_reply(sink->amqp), "queue.purge"))
        goto fail;
    amqp_basic_consume(sink->amqp, 1, queue, amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    if (s_amqp_check(amqp_get_rpc_reply(sink->amqp), "basic.consume"))
        goto fail;
    snprintf(sink->socket, sizeof(sink->socket),
             "rabbitmq:127.0.0.1:%d/" S_AMQP_QUEUE, bench->amqp_port);
    return 0;
fail:
    s_amqp_close(&sink->amqp);
    return -1;
}

//  --------------------------------------------------------------------------
//  rabbitmq: take one delivery and count its body.

static int s_rmq_recv(s_sink_t *self)
{
    amqp_envelope_t envelope;
    struct timeval timeout = {0, S_SINK_POLL_MS * 1000};
    amqp_maybe_release_buffers(self->amqp);
    amqp_rpc_reply_t reply =
        amqp_consume_message(self->amqp, &envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_bytes_t body = envelope.message.body;
        size_t len = body.len < S_SINK_DGRAM ? body.len : S_SINK_DGRAM;
        memcpy(self->bufs[0], body.bytes, len);
        s_sink_count(self, self->bufs[0], len, s_mono_us(), s_real_us());
        amqp_destroy_envelope(&envelope);
        return 0;
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_TIMEOUT)
        return 0; //  to check stop
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        //  a frame other than a delivery is waiting: take it, go on
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(self->amqp, &frame) == AMQP_STATUS_OK)
            return 0;
    }
    return s_amqp_check(reply, "consume");
}

//  --------------------------------------------------------------------------
//  rabbitmq: close the consumer's connection.

static void s_rmq_close(s_sink_t *sink)
{
    s_amqp_close(&sink->amqp);
}

//  --------------------------------------------------------------------------
//  Account a basic.ack or basic.nack for tag (and every tag below it when
//  multiple).

static void s_confirms_mark(s_confirms_t *self, uint64_t tag, bool multiple,
                            bool nack)
{
    if (tag < 1 || tag > self->n)
        return;
    for (uint64_t t = multiple ? self->low + 1 : tag; t <= tag; t++) {
        uint64_t bit = 1ULL << (t % 64);
        if (self->bitmap[t / 64] & bit)
            continue;
        self->bitmap[t / 64] |= bit;
        self->confirmed++;
        if (nack)
            self->nacked++;
    }
    while (self->low < self->n && (self->bitmap[(self->low + 1) / 64] &
                                   1ULL << ((self->low + 1) % 64)))
        self->low++;
}

//  --------------------------------------------------------------------------
//  Read one frame on the publisher's connection and account the confirms
//  it carries. Returns 0, or -1 when the channel or connection failed or
//  nothing came for S_AMQP_CONFIRM_TIMEOUT_S.

static int s_confirms_read(s_confirms_t *self, amqp_connection_state_t conn)
{
    amqp_frame_t frame;
    struct timeval timeout = {S_AMQP_CONFIRM_TIMEOUT_S, 0};
    amqp_maybe_release_buffers(conn);
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "evrelay-bench: raw amqp: waiting for confirms: %s\n",
                amqp_error_string2(status));
        return -1;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0;
    void *decoded = frame.payload.method.decoded;
    switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *ack = decoded;
            s_confirms_mark(self, ack->delivery_tag, ack->multiple, false);
            return 0;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *nack = decoded;
            s_confirms_mark(self, nack->delivery_tag, nack->multiple, true);
            return 0;
        }
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            fprintf(stderr, "evrelay-bench: raw amqp: the broker closed the "
                            "channel\n");
            return -1;
        default:
            return 0;
    }
}

//  --------------------------------------------------------------------------
//  rabbitmq: publish every payload to the bench queue on a confirmed
//  channel, keeping at most S_AMQP_WINDOW unconfirmed; returns when all
//  are confirmed.

static int s_rmq_raw(s_bench_t *bench, s_sink_t **sinks, int count,
                     const s_payloads_t *payloads, int64_t *first_send_us)
{
    s_confirms_t confirms = {.n = payloads->n};
    confirms.bitmap = calloc(payloads->n / 64 + 1, sizeof(uint64_t));
    amqp_connection_state_t conn = s_amqp_connect(bench->amqp_port);
    int rc = -1;
    if (!conn || !confirms.bitmap)
        goto done;
    amqp_confirm_select(conn, 1);
    if (s_amqp_check(amqp_get_rpc_reply(conn), "confirm.select"))
        goto done;
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .delivery_mode = 1}; //  transient
    amqp_bytes_t queue = amqp_cstring_bytes(S_AMQP_QUEUE);
    size_t published = 0;
    *first_send_us = s_mono_us();
    while (confirms.confirmed < payloads->n && !s_interrupted) {
        while (published < payloads->n &&
               published - confirms.confirmed < S_AMQP_WINDOW) {
            amqp_bytes_t body = {(size_t)payloads->lens[published],
                                 payloads->data + published * S_PAYLOAD_SLOT};
            int status = amqp_basic_publish(conn, 1, amqp_empty_bytes, queue, 0,
                                            0, &props, body);
            if (status != AMQP_STATUS_OK) {
                fprintf(stderr, "evrelay-bench: raw amqp: publish: %s\n",
                        amqp_error_string2(status));
                goto done;
            }
            published++;
        }
        if (s_confirms_read(&confirms, conn))
            goto done;
    }
    if (confirms.nacked)
        fprintf(stderr, "evrelay-bench: raw amqp: %zu nacked\n",
                confirms.nacked);
    rc = 0;
done:
    s_amqp_close(&conn);
    free(confirms.bitmap);
    return rc;
}

//  ==========================================================================
//  The scenarios, in the order `all` runs them.

static int s_acks_run(s_bench_t *bench, const s_scenario_t *acks);
static int s_curve_run(s_bench_t *bench, const s_scenario_t *scenario);

static const s_scenario_t s_scenarios[] = {
    {.name = "udp",
     .about = "udp:127.0.0.1:A to one UDP sink",
     .raw_name = "sendto() from one thread",
     .sinks = 1,
     .target = 0.5,
     .open = s_udp_open,
     .recv = s_udp_recv,
     .close = s_udp_close,
     .raw = s_udp_raw},
    {.name = "parallel",
     .about = "virtual:PARALLEL udp:127.0.0.1:A udp:127.0.0.1:B, every "
              "event to both sinks; rates count deliveries",
     .raw_name = "sendto() from one thread, alternately to A and B",
     .sinks = 2,
     .target = 0.5,
     .open = s_udp_open,
     .recv = s_udp_recv,
     .close = s_udp_close,
     .raw = s_udp_raw},
    {.name = "zmq",
     .about = "zmq:push:tcp://127.0.0.1:P to a PULL sink",
     .raw_name = "a PUSH socket of the bench to the same PULL",
     .sinks = 1,
     .setup = s_zmq_setup,
     .teardown = s_zmq_teardown,
     .open = s_zmq_open,
     .recv = s_zmq_recv,
     .close = s_zmq_close,
     .raw = s_zmq_raw},
    {.name = "rabbitmq",
     .about = "rabbitmq:127.0.0.1:P/" S_AMQP_QUEUE
              " to a no-ack consumer of queue " S_AMQP_QUEUE,
     .raw_name = "basic.publish with confirms, at most 256 unconfirmed",
     .sinks = 1,
     .target = 0.8,
     .setup = s_rmq_setup,
     .teardown = s_rmq_teardown,
     .open = s_rmq_open,
     .recv = s_rmq_recv,
     .close = s_rmq_close,
     .raw = s_rmq_raw},
    {.name = "acks",
     .about = "the relay half of --acks-on (default udp) with each client "
              "ack point: none (fire-and-forget), accepted, delivered",
     .raw_name = "none: the NONE relay half is the baseline of the others",
     .target = 0.9,
     .run = s_acks_run},
    {.name = "curve",
     .about = "udp:127.0.0.1:A to one UDP sink, through the plain relay and "
              "through a relay with CURVE on ingest and control",
     .raw_name = "a DEALER -> ROUTER pair of the bench, one payload per "
                 "message, plain and with CURVE",
     .run = s_curve_run},
};

#define S_SCENARIOS (sizeof(s_scenarios) / sizeof(s_scenarios[0]))

//  ==========================================================================
//  The relay.

//  --------------------------------------------------------------------------
//  Run evrelayctl with up to four arguments (the first NULL ends them)
//  against the relay in use, over CURVE when it wants it. Returns its exit
//  status.

static int s_ctl(s_bench_t *bench, const char *a1, const char *a2,
                 const char *a3, const char *a4)
{
    char *argv[16] = {(char *)bench->ctl, "-s", bench->control, "-t",
                      S_CTL_TIMEOUT_MS};
    int argc = 5;
    if (bench->cert) {
        argv[argc++] = "--cert";
        argv[argc++] = (char *)bench->cert;
        argv[argc++] = "--server-key";
        argv[argc++] = (char *)bench->server_key;
    }
    const char *args[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4 && args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return s_run(argv, NULL, bench->verbose, S_CTL_WAIT_MS);
}

//  --------------------------------------------------------------------------
//  Subscribe (expire "3600") or unsubscribe (expire "0") a socket to the
//  bench event. Returns 0 or -1.

static int s_subscribe(s_bench_t *bench, const char *socket, const char *expire)
{
    int rc = s_ctl(bench, "subscribe", S_EVENT, socket, expire);
    if (rc != 0)
        fprintf(stderr,
                "evrelay-bench: evrelayctl subscribe %s '%s' %s: exit %d\n",
                S_EVENT, socket, expire, rc);
    return rc == 0 ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  The socket that subscribes all sinks: the sink's own, or with more
//  than one a virtual:PARALLEL of theirs.

static void s_sinks_socket(s_sink_t **sinks, int count, char *buf, size_t size)
{
    if (count == 1) {
        snprintf(buf, size, "%s", sinks[0]->socket);
        return;
    }
    size_t len = (size_t)snprintf(buf, size, "virtual:PARALLEL");
    for (int i = 0; i < count && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, " %s", sinks[i]->socket);
}

//  --------------------------------------------------------------------------
//  Raise one event named name with the bench's params. Returns evr_raise's
//  answer.

static int s_raise_named(evr_client_t *client, const char *name, size_t seq,
                         const char *pad)
{
    evr_event_t *event = evr_event_new(name);
    if (!event)
        return -1;
    evr_event_add_int(event, "seq", (int64_t)seq);
    evr_event_add_int(event, "ts", s_real_us());
    evr_event_add_str(event, "pad", pad);
    return evr_raise(client, &event);
}

//  --------------------------------------------------------------------------
//  Raise one bench event. Returns evr_raise's answer.

static int s_raise(evr_client_t *client, size_t seq, const char *pad)
{
    return s_raise_named(client, S_EVENT, seq, pad);
}

//  --------------------------------------------------------------------------
//  Start evrelayd on the relay endpoints in use, with up to 10 more
//  arguments (extra NULL-terminated, or NULL), and wait until
//  `evrelayctl list` answers. Returns the relay's pid, or -1.

static pid_t s_relay_start(s_bench_t *bench, char *const *extra)
{
    char *argv[16] = {(char *)bench->relay, "--ingest", bench->ingest,
                      "--control", bench->control};
    for (int i = 0; extra && extra[i] && i < 10; i++)
        argv[5 + i] = extra[i];
    pid_t pid = s_spawn(argv, NULL, bench->verbose);
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
    s_stop_pid(pid, 0);
    return -1;
}

//  ==========================================================================
//  Measuring.

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
//  p50 and p99 of the latencies of all sinks (stopped) into result.
//  Returns 0 or -1.

static int s_latency(s_sink_t **sinks, int count, s_relay_out_t *result)
{
    size_t total = 0;
    for (int i = 0; i < count; i++)
        total += sinks[i]->lat_count;
    int64_t *all = malloc((total ? total : 1) * sizeof(int64_t));
    if (!all)
        return -1;
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        memcpy(all + at, sinks[i]->lat_us,
               sinks[i]->lat_count * sizeof(int64_t));
        at += sinks[i]->lat_count;
    }
    qsort(all, total, sizeof(int64_t), s_cmp_i64);
    result->p50_us = s_percentile(all, total, 50);
    result->p99_us = s_percentile(all, total, 99);
    free(all);
    return 0;
}

//  --------------------------------------------------------------------------
//  Raw half: the scenario's baseline sends the pre-built payloads to
//  fresh sinks. Returns 0 or -1.

static int s_half_raw(s_bench_t *bench, const s_scenario_t *scenario,
                      const s_payloads_t *payloads, s_result_t *result)
{
    s_sink_t *sinks[S_MAX_SINKS] = {NULL};
    if (s_sinks_new(bench, scenario, false, sinks))
        return -1;
    int64_t first_send = 0;
    int rc =
        scenario->raw(bench, sinks, scenario->sinks, payloads, &first_send);
    if (rc == 0) {
        s_sinks_wait(sinks, scenario->sinks, s_mono_us());
        s_sinks_measure(sinks, scenario->sinks, first_send, &result->raw);
    }
    s_sinks_destroy(sinks, scenario->sinks);
    return rc;
}

//  --------------------------------------------------------------------------
//  The name of an ack point, as --ack spells it.

static const char *s_ack_name(evr_ack_point_t ack)
{
    return ack == EVR_ACK_DELIVERED ? "delivered"
           : ack == EVR_ACK_NONE    ? "none"
                                    : "accepted";
}

//  --------------------------------------------------------------------------
//  Warm up the connection and the relay's path to the sinks with seq 0
//  (not counted by the sinks): acked (ACCEPTED, DELIVERED), then at every
//  sink; with NONE, raised again every 50 ms until it arrives (a batch is
//  dropped while the client is still connecting). Returns 0 or -1.

static int s_warm_up(s_bench_t *bench, evr_client_t *client, s_sink_t **sinks,
                     int count, const char *pad)
{
    if (bench->ack != EVR_ACK_NONE) {
        if (s_raise(client, 0, pad) || evr_client_flush(client, 5000)) {
            fprintf(stderr, "evrelay-bench: relay does not ack at %s\n",
                    bench->ingest);
            return -1;
        }
        return s_sinks_warm(sinks, count);
    }
    int64_t deadline = s_mono_us() + S_WARMUP_MS * 1000LL;
    while (!s_interrupted && s_mono_us() < deadline) {
        bool warm = true;
        for (int i = 0; i < count; i++)
            warm &= atomic_load(&sinks[i]->messages) > 0;
        if (warm)
            return 0;
        s_raise(client, 0, pad);
        s_sleep_ms(50);
    }
    fprintf(stderr, "evrelay-bench: no warm-up event in %d ms\n", S_WARMUP_MS);
    return -1;
}

//  --------------------------------------------------------------------------
//  Relay half: subscribe fresh sinks with the scenario's socket, raise n
//  events through libevrelay with the ack point bench->ack. Returns 0 or
//  -1.

static int s_half_relay(s_bench_t *bench, const s_scenario_t *scenario,
                        s_relay_out_t *result)
{
    s_sink_t *sinks[S_MAX_SINKS] = {NULL};
    int count = scenario->sinks;
    char socket[S_MAX_SINKS * 160];
    char *pad = s_pad_new(bench->n);
    evr_client_t *client = NULL;
    bool subscribed = false;
    int rc = -1;
    result->relay_cpu_us = result->bench_cpu_us = 0;
    if (!pad || s_sinks_new(bench, scenario, true, sinks))
        goto done;
    s_sinks_socket(sinks, count, socket, sizeof(socket));
    if (s_subscribe(bench, socket, S_SUB_EXPIRE))
        goto done;
    subscribed = true;
    evr_client_opts_t opts = {.ack_point = bench->ack,
                              .cert = bench->cert,
                              .server_key = bench->server_key};
    client = evr_client_new(bench->ingest, &opts);
    if (!client) {
        fprintf(stderr, "evrelay-bench: cannot connect to %s\n", bench->ingest);
        goto done;
    }
    if (s_warm_up(bench, client, sinks, count, pad))
        goto done;
    evr_client_stats_t before, after;
    evr_client_stats(client, &before);
    int64_t relay_cpu = s_cpu_us(bench->relay_pid),
            own_cpu = s_cpu_us(getpid());
    int64_t first_raise = s_mono_us();
    for (size_t seq = 1; seq <= bench->n && !s_interrupted; seq++)
        s_raise(client, seq, pad);
    s_sinks_wait(sinks, count, s_mono_us());
    if (relay_cpu >= 0 && own_cpu >= 0) {
        result->relay_cpu_us =
            (double)(s_cpu_us(bench->relay_pid) - relay_cpu) / (double)bench->n;
        result->bench_cpu_us =
            (double)(s_cpu_us(getpid()) - own_cpu) / (double)bench->n;
    }
    s_sinks_measure(sinks, count, first_raise, &result->half);
    evr_client_stats(client, &after);
    result->dropped = after.dropped - before.dropped;
    result->resent = after.resent - before.resent;
    rc = s_latency(sinks, count, result);
done:
    evr_client_destroy(&client);
    if (subscribed)
        s_subscribe(bench, socket, "0");
    s_sinks_destroy(sinks, count);
    free(pad);
    return rc;
}

//  --------------------------------------------------------------------------
//  Write what a half received into buf: the total, and per sink when
//  there are several ("200000 = 100000+100000").

static void s_format_received(const s_half_t *half, int count, char *buf,
                              size_t size)
{
    size_t len = (size_t)snprintf(buf, size, "%" PRIu64, half->received);
    for (int i = 0; count > 1 && i < count && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%" PRIu64,
                                i ? "+" : " = ", half->per_sink[i]);
}

//  --------------------------------------------------------------------------
//  Print one run's line.

static void s_print_run(const s_scenario_t *scenario, int run,
                        const s_result_t *r)
{
    char raw[80], relay[80];
    s_format_received(&r->raw, scenario->sinks, raw, sizeof(raw));
    s_format_received(&r->relay, scenario->sinks, relay, sizeof(relay));
    printf("run %d: raw %.0f ev/s (recv %s) | relay %.0f ev/s p50 %.0f us "
           "p99 %.0f us recv %s lost %" PRIu64 " dup %" PRIu64
           " | client dropped %" PRIu64 " resent %" PRIu64 "\n",
           run, r->raw.eps, raw, r->relay.eps, r->p50_us, r->p99_us, relay,
           r->relay.lost, r->relay.dup, r->dropped, r->resent);
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  Compare two doubles, for qsort.

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

//  --------------------------------------------------------------------------
//  The median of n doubles (sorts them).

static double s_median(double *values, size_t n)
{
    if (n == 0)
        return 0;
    qsort(values, n, sizeof(double), s_cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

//  --------------------------------------------------------------------------
//  Print the summary of a scenario's runs: medians, the target, and the
//  RESULT line.

static void s_summary(const s_scenario_t *scenario, const s_result_t *results,
                      int runs)
{
    double raw[runs], relay[runs], ratio[runs], p50[runs], p99[runs],
        received[runs], lost[runs], dup[runs], dropped[runs], resent[runs];
    for (int i = 0; i < runs; i++) {
        raw[i] = results[i].raw.eps;
        relay[i] = results[i].relay.eps;
        ratio[i] = raw[i] > 0 ? relay[i] / raw[i] : 0;
        p50[i] = results[i].p50_us;
        p99[i] = results[i].p99_us;
        received[i] = (double)results[i].relay.received;
        lost[i] = (double)results[i].relay.lost;
        dup[i] = (double)results[i].relay.dup;
        dropped[i] = (double)results[i].dropped;
        resent[i] = (double)results[i].resent;
    }
    double m_raw = s_median(raw, runs), m_relay = s_median(relay, runs),
           m_ratio = s_median(ratio, runs), m_p50 = s_median(p50, runs),
           m_p99 = s_median(p99, runs), m_lost = s_median(lost, runs),
           m_dup = s_median(dup, runs);
    char target[64] = "none set";
    if (scenario->target > 0)
        snprintf(target, sizeof(target), "ratio >= %.2f: %s", scenario->target,
                 m_ratio >= scenario->target ? "met" : "NOT met");
    printf("summary %s (median of %d runs):\n"
           "  raw            %12.0f %s/s\n"
           "  relay          %12.0f %s/s\n"
           "  ratio          %12.3f relay/raw (median of per-run ratios)\n"
           "  target         %s\n"
           "  latency p50    %12.0f us\n"
           "  latency p99    %12.0f us\n"
           "  received       %12.0f\n"
           "  lost           %12.0f\n"
           "  duplicate      %12.0f\n"
           "  client dropped %12.0f\n"
           "  client resent  %12.0f\n",
           scenario->name, runs, m_raw,
           scenario->sinks > 1 ? "deliveries" : "events", m_relay,
           scenario->sinks > 1 ? "deliveries" : "events", m_ratio, target,
           m_p50, m_p99, s_median(received, runs), m_lost, m_dup,
           s_median(dropped, runs), s_median(resent, runs));
    printf("RESULT scenario=%s raw_eps=%.0f relay_eps=%.0f ratio=%.3f "
           "p50_us=%.0f p99_us=%.0f lost=%.0f dup=%.0f\n",
           scenario->name, m_raw, m_relay, m_ratio, m_p50, m_p99, m_lost,
           m_dup);
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  acks: print one run's line.

static void s_acks_print_run(int run, const s_acks_result_t *r)
{
    printf("run %d:", run);
    static const evr_ack_point_t order[] = {EVR_ACK_NONE, EVR_ACK_ACCEPTED,
                                            EVR_ACK_DELIVERED};
    for (int i = 0; i < S_ACK_POINTS; i++) {
        const s_relay_out_t *o = &r->by_point[order[i]];
        printf("%s %s %.0f ev/s p50 %.0f us lost %" PRIu64 " dup %" PRIu64
               " dropped %" PRIu64 " resent %" PRIu64,
               i ? " |" : "", s_ack_name(order[i]), o->half.eps, o->p50_us,
               o->half.lost, o->half.dup, o->dropped, o->resent);
    }
    printf("\n");
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  acks: medians across runs, the ratios to NONE, the RESULT line.

static void s_acks_summary(const s_scenario_t *scenario,
                           const s_acks_result_t *results, int runs)
{
    double eps[S_ACK_POINTS][runs], p50[S_ACK_POINTS][runs],
        lost[S_ACK_POINTS][runs], ratio[S_ACK_POINTS][runs];
    for (int i = 0; i < runs; i++) {
        double none = results[i].by_point[EVR_ACK_NONE].half.eps;
        for (int a = 0; a < S_ACK_POINTS; a++) {
            const s_relay_out_t *o = &results[i].by_point[a];
            eps[a][i] = o->half.eps;
            p50[a][i] = o->p50_us;
            lost[a][i] = (double)o->half.lost;
            ratio[a][i] = none > 0 ? o->half.eps / none : 0;
        }
    }
    double m_eps[S_ACK_POINTS], m_ratio[S_ACK_POINTS], m_p50[S_ACK_POINTS],
        m_lost[S_ACK_POINTS];
    for (int a = 0; a < S_ACK_POINTS; a++) {
        m_eps[a] = s_median(eps[a], runs);
        m_ratio[a] = s_median(ratio[a], runs);
        m_p50[a] = s_median(p50[a], runs);
        m_lost[a] = s_median(lost[a], runs);
    }
    printf("summary %s (median of %d runs):\n", scenario->name, runs);
    static const evr_ack_point_t order[] = {EVR_ACK_NONE, EVR_ACK_ACCEPTED,
                                            EVR_ACK_DELIVERED};
    for (int i = 0; i < S_ACK_POINTS; i++) {
        evr_ack_point_t a = order[i];
        printf("  %-10s %10.0f events/s  ratio to none %.3f  p50 %.0f us  "
               "lost %.0f",
               s_ack_name(a), m_eps[a], m_ratio[a], m_p50[a], m_lost[a]);
        if (a != EVR_ACK_NONE)
            printf("  target ratio >= %.2f: %s", scenario->target,
                   m_ratio[a] >= scenario->target ? "met" : "NOT met");
        printf("\n");
    }
    printf("RESULT scenario=%s none_eps=%.0f accepted_eps=%.0f "
           "delivered_eps=%.0f accepted_ratio=%.3f delivered_ratio=%.3f "
           "lost_none=%.0f lost_accepted=%.0f lost_delivered=%.0f\n",
           scenario->name, m_eps[EVR_ACK_NONE], m_eps[EVR_ACK_ACCEPTED],
           m_eps[EVR_ACK_DELIVERED], m_ratio[EVR_ACK_ACCEPTED],
           m_ratio[EVR_ACK_DELIVERED], m_lost[EVR_ACK_NONE],
           m_lost[EVR_ACK_ACCEPTED], m_lost[EVR_ACK_DELIVERED]);
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  acks: per run, a relay half for each ack point (the order rotates from
//  run to run, so none of them always goes first), then the summary.
//  Returns 0 when it completed, -1 on failure.

static int s_acks_run(s_bench_t *bench, const s_scenario_t *acks)
{
    //  the sinks, socket and broker of the --acks-on scenario
    const s_scenario_t *base = NULL;
    for (size_t i = 0; i < S_SCENARIOS; i++)
        if (s_scenarios[i].raw && !strcmp(s_scenarios[i].name, bench->acks_on))
            base = &s_scenarios[i];
    if (!base) {
        printf("RESULT scenario=%s failed=1\n", acks->name);
        return -1;
    }
    s_scenario_t local = *base;
    local.name = acks->name;
    local.target = acks->target;
    const s_scenario_t *scenario = &local;
    printf("   transport: %s (%s)\n", base->name, base->about);
    fflush(stdout);
    int ready = scenario->setup ? scenario->setup(bench) : 0;
    if (ready != 0) {
        printf("RESULT scenario=%s %s=1\n", scenario->name,
               ready > 0 ? "skipped" : "failed");
        if (scenario->teardown)
            scenario->teardown(bench);
        return ready > 0 ? 0 : -1;
    }
    s_acks_result_t *results =
        calloc((size_t)bench->runs, sizeof(s_acks_result_t));
    static const evr_ack_point_t order[] = {EVR_ACK_NONE, EVR_ACK_ACCEPTED,
                                            EVR_ACK_DELIVERED};
    evr_ack_point_t saved = bench->ack;
    int run = 0;
    bool failed = !results;
    for (; !failed && run < bench->runs && !s_interrupted; run++) {
        for (int i = 0; i < S_ACK_POINTS && !failed; i++) {
            evr_ack_point_t a = order[(run + i) % S_ACK_POINTS];
            bench->ack = a;
            failed =
                s_half_relay(bench, scenario, &results[run].by_point[a]) != 0;
            if (failed)
                printf("run %d: relay half with ack point %s failed\n", run + 1,
                       s_ack_name(a));
        }
        if (!failed)
            s_acks_print_run(run + 1, &results[run]);
    }
    bench->ack = saved;
    int rc = !failed && run == bench->runs ? 0 : -1;
    if (rc == 0)
        s_acks_summary(scenario, results, bench->runs);
    else
        printf("RESULT scenario=%s failed=1\n", scenario->name);
    free(results);
    if (scenario->teardown)
        scenario->teardown(bench);
    return rc;
}

//  --------------------------------------------------------------------------
//  curve: point the bench's evrelayctl calls and libevrelay clients at
//  the CURVE relay (on) or back at the plain one.

static void s_curve_use(s_bench_t *bench, bool on)
{
    s_curve_t *curve = bench->curve;
    snprintf(bench->ingest, sizeof(bench->ingest), "%s",
             on ? curve->ingest : curve->plain_ingest);
    snprintf(bench->control, sizeof(bench->control), "%s",
             on ? curve->control : curve->plain_control);
    bench->relay_pid = on ? curve->relay_pid : curve->plain_pid;
    bench->cert = on ? curve->client_cert : NULL;
    bench->server_key = on ? curve->relay_public : NULL;
}

//  --------------------------------------------------------------------------
//  curve: stop the CURVE relay, remove the certificates, terminate the
//  bench's context, free. Safe when setup stopped half-way.

static void s_curve_teardown(s_bench_t *bench)
{
    s_curve_t *curve = bench->curve;
    if (curve) {
        s_curve_use(bench, false);
        s_stop_pid(curve->relay_pid, S_STOP_GRACE_MS);
        if (curve->dir[0])
            nftw(curve->dir, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(curve);
        bench->curve = NULL;
    }
    s_zmq_teardown(bench);
}

//  --------------------------------------------------------------------------
//  curve: make the certificates (evrelayctl keygen: the relay's in DIR,
//  the bench's in DIR/clients, which the relay allows on ingest and
//  control) and the raw pair's key pairs, start the CURVE relay on
//  ingest P+2, control P+3, and the bench's ZeroMQ context. 0 ready,
//  1 skip (said why), -1 failed.

static int s_curve_setup(s_bench_t *bench)
{
    if (!zmq_has("curve")) {
        printf("curve: skipped: this libzmq has no CURVE\n");
        return 1;
    }
    s_curve_t *curve = calloc(1, sizeof(s_curve_t));
    if (!curve)
        return -1;
    bench->curve = curve;
    curve->relay_pid = -1;
    snprintf(curve->plain_ingest, sizeof(curve->plain_ingest), "%s",
             bench->ingest);
    snprintf(curve->plain_control, sizeof(curve->plain_control), "%s",
             bench->control);
    curve->plain_pid = bench->relay_pid;
    snprintf(curve->ingest, sizeof(curve->ingest), "tcp://127.0.0.1:%d",
             bench->port_base + 2);
    snprintf(curve->control, sizeof(curve->control), "tcp://127.0.0.1:%d",
             bench->port_base + 3);
    snprintf(curve->dir, sizeof(curve->dir), "/tmp/evrelay-bench-curve.XXXXXX");
    if (!mkdtemp(curve->dir)) {
        curve->dir[0] = '\0';
        fprintf(stderr, "evrelay-bench: curve: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(curve->clients, sizeof(curve->clients), "%s/clients", curve->dir);
    snprintf(curve->relay_cert, sizeof(curve->relay_cert),
             "%s/relay.cert_secret", curve->dir);
    snprintf(curve->relay_public, sizeof(curve->relay_public), "%s/relay.cert",
             curve->dir);
    snprintf(curve->client_cert, sizeof(curve->client_cert),
             "%s/bench.cert_secret", curve->clients);
    char *relay_argv[] = {(char *)bench->ctl, "keygen", "relay", curve->dir,
                          NULL};
    char *bench_argv[] = {(char *)bench->ctl, "keygen", "bench", curve->clients,
                          NULL};
    if (mkdir(curve->clients, 0700) ||
        s_run(relay_argv, NULL, bench->verbose, S_CTL_WAIT_MS) ||
        s_run(bench_argv, NULL, bench->verbose, S_CTL_WAIT_MS)) {
        fprintf(stderr,
                "evrelay-bench: curve: evrelayctl keygen into %s "
                "failed (-v shows why)\n",
                curve->dir);
        return -1;
    }
    if (zmq_curve_keypair(curve->server_public, curve->server_secret) ||
        zmq_curve_keypair(curve->client_public, curve->client_secret)) {
        fprintf(stderr, "evrelay-bench: curve: zmq_curve_keypair: %s\n",
                zmq_strerror(zmq_errno()));
        return -1;
    }
    if (s_zmq_setup(bench))
        return -1;
    char *extra[] = {
        "--cert",      curve->relay_cert, "--producers", curve->clients,
        "--operators", curve->clients,    NULL};
    s_curve_use(bench, true);
    curve->relay_pid = s_relay_start(bench, extra);
    s_curve_use(bench, false);
    return curve->relay_pid < 0 ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  curve: ingest half: raise n events nobody subscribed to through
//  libevrelay (ACCEPTED) to the relay in use and time them until the last
//  is acked: the relay's ingest path alone (receive, decode,
//  de-duplication, lookup, ack), which delivery does not bound. Returns 0
//  or -1 (said why).

static int s_half_ingest(s_bench_t *bench, s_relay_out_t *result)
{
    memset(result, 0, sizeof(*result));
    char *pad = s_pad_new(bench->n);
    evr_client_opts_t opts = {.ack_point = EVR_ACK_ACCEPTED,
                              .cert = bench->cert,
                              .server_key = bench->server_key};
    evr_client_t *client = pad ? evr_client_new(bench->ingest, &opts) : NULL;
    int rc = -1;
    if (!client) {
        fprintf(stderr, "evrelay-bench: cannot connect to %s\n", bench->ingest);
        goto done;
    }
    if (s_raise_named(client, S_EVENT_INGEST, 0, pad) ||
        evr_client_flush(client, 5000)) {
        fprintf(stderr, "evrelay-bench: relay does not ack at %s\n",
                bench->ingest);
        goto done;
    }
    evr_client_stats_t before, after;
    evr_client_stats(client, &before);
    int64_t relay_cpu = s_cpu_us(bench->relay_pid),
            own_cpu = s_cpu_us(getpid());
    int64_t start = s_mono_us();
    for (size_t seq = 1; seq <= bench->n && !s_interrupted; seq++)
        s_raise_named(client, S_EVENT_INGEST, seq, pad);
    if (evr_client_flush(client, S_INGEST_FLUSH_MS)) {
        fprintf(stderr, "evrelay-bench: %s: not every event acked in %d ms\n",
                bench->ingest, S_INGEST_FLUSH_MS);
        goto done;
    }
    int64_t span = s_mono_us() - start;
    evr_client_stats(client, &after);
    result->half.received = after.acked - before.acked;
    result->half.lost = bench->n - result->half.received;
    result->half.eps =
        span > 0 ? (double)result->half.received * 1e6 / (double)span : 0;
    result->dropped = after.dropped - before.dropped;
    result->resent = after.resent - before.resent;
    if (relay_cpu >= 0 && own_cpu >= 0) {
        result->relay_cpu_us =
            (double)(s_cpu_us(bench->relay_pid) - relay_cpu) / (double)bench->n;
        result->bench_cpu_us =
            (double)(s_cpu_us(getpid()) - own_cpu) / (double)bench->n;
    }
    rc = 0;
done:
    evr_client_destroy(&client);
    free(pad);
    return rc;
}

//  --------------------------------------------------------------------------
//  curve: the ratio CURVE/plain of two rates, 0 when plain is 0.

static double s_ratio(double curve, double plain)
{
    return plain > 0 ? curve / plain : 0;
}

//  --------------------------------------------------------------------------
//  curve: print one run's line.

static void s_curve_print_run(int run, const s_curve_result_t *r)
{
    printf("run %d:", run);
    for (int c = 0; c < 2; c++) {
        const s_relay_out_t *o = &r->relay[c];
        printf("%s relay %s %.0f ev/s p50 %.0f us p99 %.0f us lost %" PRIu64
               " dup %" PRIu64 " dropped %" PRIu64 " resent %" PRIu64
               " cpu relay %.2f bench %.2f us/ev",
               c ? " |" : "", c ? "CURVE" : "plain", o->half.eps, o->p50_us,
               o->p99_us, o->half.lost, o->half.dup, o->dropped, o->resent,
               o->relay_cpu_us, o->bench_cpu_us);
    }
    for (int c = 0; c < 2; c++) {
        const s_relay_out_t *o = &r->ingest[c];
        printf(" | ingest %s %.0f ev/s dropped %" PRIu64 " resent %" PRIu64
               " cpu relay %.2f bench %.2f us/ev",
               c ? "CURVE" : "plain", o->half.eps, o->dropped, o->resent,
               o->relay_cpu_us, o->bench_cpu_us);
    }
    for (int c = 0; c < 2; c++)
        printf(" | zmq %s %.0f msg/s lost %" PRIu64, c ? "CURVE" : "plain",
               r->zmq[c].eps, r->zmq[c].lost);
    printf(" | CURVE/plain relay %.3f ingest %.3f zmq %.3f\n",
           s_ratio(r->relay[1].half.eps, r->relay[0].half.eps),
           s_ratio(r->ingest[1].half.eps, r->ingest[0].half.eps),
           s_ratio(r->zmq[1].eps, r->zmq[0].eps));
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  curve: medians across runs, the medians of the per-run ratios, the
//  RESULT line.

static void s_curve_summary(const s_scenario_t *scenario,
                            const s_curve_result_t *results, int runs)
{
    double eps[2][runs], p50[2][runs], p99[2][runs], lost[2][runs],
        dropped[2][runs], cpu[2][runs], own[2][runs], in_eps[2][runs],
        in_cpu[2][runs], in_own[2][runs], zmq[2][runs], zlost[2][runs],
        ratio[runs], in_ratio[runs], zratio[runs];
    for (int i = 0; i < runs; i++) {
        const s_curve_result_t *r = &results[i];
        for (int c = 0; c < 2; c++) {
            eps[c][i] = r->relay[c].half.eps;
            p50[c][i] = r->relay[c].p50_us;
            p99[c][i] = r->relay[c].p99_us;
            lost[c][i] = (double)r->relay[c].half.lost;
            dropped[c][i] = (double)r->relay[c].dropped;
            cpu[c][i] = r->relay[c].relay_cpu_us;
            own[c][i] = r->relay[c].bench_cpu_us;
            in_eps[c][i] = r->ingest[c].half.eps;
            in_cpu[c][i] = r->ingest[c].relay_cpu_us;
            in_own[c][i] = r->ingest[c].bench_cpu_us;
            zmq[c][i] = r->zmq[c].eps;
            zlost[c][i] = (double)r->zmq[c].lost;
        }
        ratio[i] = s_ratio(eps[1][i], eps[0][i]);
        in_ratio[i] = s_ratio(in_eps[1][i], in_eps[0][i]);
        zratio[i] = s_ratio(zmq[1][i], zmq[0][i]);
    }
    double m_eps[2], m_p50[2], m_p99[2], m_lost[2], m_cpu[2], m_own[2], m_in[2],
        m_in_cpu[2], m_in_own[2], m_zmq[2];
    printf("summary %s (median of %d runs):\n", scenario->name, runs);
    for (int c = 0; c < 2; c++) {
        m_eps[c] = s_median(eps[c], runs);
        m_p50[c] = s_median(p50[c], runs);
        m_p99[c] = s_median(p99[c], runs);
        m_lost[c] = s_median(lost[c], runs);
        m_cpu[c] = s_median(cpu[c], runs);
        m_own[c] = s_median(own[c], runs);
        printf("  relay %-5s %12.0f events/s  p50 %.0f us  p99 %.0f us  "
               "lost %.0f  client dropped %.0f  CPU per event: relay %.2f "
               "us, bench %.2f us\n",
               c ? "CURVE" : "plain", m_eps[c], m_p50[c], m_p99[c], m_lost[c],
               s_median(dropped[c], runs), m_cpu[c], m_own[c]);
    }
    double m_ratio = s_median(ratio, runs);
    printf("  relay ratio %12.3f CURVE/plain (median of per-run ratios)\n",
           m_ratio);
    for (int c = 0; c < 2; c++) {
        m_in[c] = s_median(in_eps[c], runs);
        m_in_cpu[c] = s_median(in_cpu[c], runs);
        m_in_own[c] = s_median(in_own[c], runs);
        printf("  ingest %-5s%12.0f events/s acked, no subscriber  CPU per "
               "event: relay %.2f us, bench %.2f us\n",
               c ? "CURVE" : "plain", m_in[c], m_in_cpu[c], m_in_own[c]);
    }
    double m_in_ratio = s_median(in_ratio, runs);
    printf("  ingest ratio%12.3f CURVE/plain (median of per-run ratios)\n",
           m_in_ratio);
    for (int c = 0; c < 2; c++) {
        m_zmq[c] = s_median(zmq[c], runs);
        printf("  zmq   %-5s %12.0f messages/s  lost %.0f\n",
               c ? "CURVE" : "plain", m_zmq[c], s_median(zlost[c], runs));
    }
    double m_zratio = s_median(zratio, runs);
    printf("  zmq   ratio %12.3f CURVE/plain (median of per-run ratios)\n",
           m_zratio);
    printf("RESULT scenario=%s plain_eps=%.0f curve_eps=%.0f ratio=%.3f "
           "zmq_plain_mps=%.0f zmq_curve_mps=%.0f zmq_ratio=%.3f "
           "p50_plain_us=%.0f p99_plain_us=%.0f p50_curve_us=%.0f "
           "p99_curve_us=%.0f lost_plain=%.0f lost_curve=%.0f "
           "relay_cpu_plain_us=%.2f relay_cpu_curve_us=%.2f "
           "bench_cpu_plain_us=%.2f bench_cpu_curve_us=%.2f "
           "ingest_plain_eps=%.0f ingest_curve_eps=%.0f ingest_ratio=%.3f "
           "ingest_relay_cpu_plain_us=%.2f ingest_relay_cpu_curve_us=%.2f\n",
           scenario->name, m_eps[0], m_eps[1], m_ratio, m_zmq[0], m_zmq[1],
           m_zratio, m_p50[0], m_p99[0], m_p50[1], m_p99[1], m_lost[0],
           m_lost[1], m_cpu[0], m_cpu[1], m_own[0], m_own[1], m_in[0], m_in[1],
           m_in_ratio, m_in_cpu[0], m_in_cpu[1]);
    fflush(stdout);
}

//  --------------------------------------------------------------------------
//  curve: measure half h of a run (0 relay plain, 1 relay CURVE, 2 raw
//  plain, 3 raw CURVE, 4 ingest plain, 5 ingest CURVE) into r. Returns 0
//  or -1 (said which).

static int s_curve_half(s_bench_t *bench, const s_scenario_t *udp, int h,
                        const s_payloads_t *payloads, s_curve_result_t *r)
{
    bool on = h % 2 == 1;
    int rc;
    if (h == 2 || h == 3) {
        s_result_t raw;
        bench->curve->raw_curve = on;
        rc = s_half_raw(bench, &s_router_pair, payloads, &raw);
        r->zmq[on] = raw.raw;
    } else {
        s_curve_use(bench, on);
        rc = h < 2 ? s_half_relay(bench, udp, &r->relay[on])
                   : s_half_ingest(bench, &r->ingest[on]);
        s_curve_use(bench, false);
    }
    if (rc)
        printf("%s %s half failed\n",
               h < 2   ? "relay"
               : h < 4 ? "zmq"
                       : "ingest",
               on ? "CURVE" : "plain");
    return rc;
}

//  --------------------------------------------------------------------------
//  curve: per run, against the plain relay and the CURVE relay a relay
//  half (udp sink) and an ingest half, and the raw pair plain and with
//  CURVE, in an order that rotates from run to run; then the summary.
//  Returns 0 when it completed or was skipped, -1 on failure.

static int s_curve_run(s_bench_t *bench, const s_scenario_t *scenario)
{
    const s_scenario_t *udp = NULL;
    for (size_t i = 0; i < S_SCENARIOS && !udp; i++)
        if (!strcmp(s_scenarios[i].name, "udp"))
            udp = &s_scenarios[i];
    printf("   relay halves: %s; client ack point %s\n", udp->about,
           s_ack_name(bench->ack));
    fflush(stdout);
    int ready = s_curve_setup(bench);
    if (ready != 0) {
        printf("RESULT scenario=%s %s=1\n", scenario->name,
               ready > 0 ? "skipped" : "failed");
        s_curve_teardown(bench);
        return ready > 0 ? 0 : -1;
    }
    printf("   CURVE relay: ingest %s, control %s, certificates in %s\n",
           bench->curve->ingest, bench->curve->control, bench->curve->dir);
    fflush(stdout);
    s_payloads_t *payloads = s_payloads_new(bench->n);
    s_curve_result_t *results =
        calloc((size_t)bench->runs, sizeof(s_curve_result_t));
    bool failed = !payloads || !results;
    int run = 0;
    for (; !failed && run < bench->runs && !s_interrupted; run++) {
        for (int i = 0; i < S_CURVE_HALVES && !failed && !s_interrupted; i++)
            failed = s_curve_half(bench, udp, (run + i) % S_CURVE_HALVES,
                                  payloads, &results[run]) != 0;
        if (!failed && !s_interrupted)
            s_curve_print_run(run + 1, &results[run]);
    }
    int rc = !failed && run == bench->runs && !s_interrupted ? 0 : -1;
    if (rc == 0)
        s_curve_summary(scenario, results, bench->runs);
    else
        printf("RESULT scenario=%s failed=1\n", scenario->name);
    free(results);
    s_payloads_destroy(&payloads);
    s_curve_teardown(bench);
    return rc;
}

//  --------------------------------------------------------------------------
//  Run one scenario: setup, runs of raw and relay halves, summary,
//  teardown. Returns 0 when it completed or was skipped, -1 on failure.

static int s_scenario_run(s_bench_t *bench, const s_scenario_t *scenario)
{
    printf("\n== %s: %s\n   raw baseline: %s\n", scenario->name,
           scenario->about, scenario->raw_name);
    if (scenario->run)
        return scenario->run(bench, scenario);
    printf("   client ack point: %s\n", s_ack_name(bench->ack));
    fflush(stdout);
    int ready = scenario->setup ? scenario->setup(bench) : 0;
    if (ready != 0) {
        printf("RESULT scenario=%s %s=1\n", scenario->name,
               ready > 0 ? "skipped" : "failed");
        if (scenario->teardown)
            scenario->teardown(bench);
        return ready > 0 ? 0 : -1;
    }
    s_payloads_t *payloads = s_payloads_new(bench->n);
    s_result_t *results = calloc((size_t)bench->runs, sizeof(s_result_t));
    int run = 0;
    for (; payloads && results && run < bench->runs && !s_interrupted; run++) {
        s_result_t *r = &results[run];
        if (s_half_raw(bench, scenario, payloads, r) || s_interrupted)
            break;
        s_relay_out_t out;
        if (s_half_relay(bench, scenario, &out)) {
            printf("run %d: raw %.0f ev/s (recv %" PRIu64 ") | relay failed\n",
                   run + 1, r->raw.eps, r->raw.received);
            break;
        }
        r->relay = out.half;
        r->p50_us = out.p50_us;
        r->p99_us = out.p99_us;
        r->dropped = out.dropped;
        r->resent = out.resent;
        s_print_run(scenario, run + 1, r);
    }
    int rc = run == bench->runs ? 0 : -1;
    if (rc == 0)
        s_summary(scenario, results, bench->runs);
    else
        printf("RESULT scenario=%s failed=1\n", scenario->name);
    free(results);
    s_payloads_destroy(&payloads);
    if (scenario->teardown)
        scenario->teardown(bench);
    return rc;
}

//  ==========================================================================
//  Command line.

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
//  Whether name is a scenario, or "all".

static bool s_scenario_valid(const char *name)
{
    bool valid = strcmp(name, "all") == 0;
    for (size_t i = 0; i < S_SCENARIOS && !valid; i++)
        valid = strcmp(name, s_scenarios[i].name) == 0;
    return valid;
}

//  --------------------------------------------------------------------------
//  Print the usage text.

static void s_usage(FILE *stream)
{
    fprintf(
        stream,
        "usage: evrelay-bench [-v] [-n N] [--runs R] [--port-base P]\n"
        "                     [--scenario "
        "udp|parallel|zmq|rabbitmq|acks|curve|all]"
        "\n"
        "                     [--ack accepted|delivered|none] "
        "[--acks-on S]\n"
        "                     [--amqp-port P] [--relay PATH] [--ctl PATH]"
        "\n"
        "  -n N           events per run (default 200000)\n"
        "  --runs R       runs; the summary is the median (default 5)\n"
        "  --port-base P  relay ingest on P, control on P+1 "
        "(default 17950);\n"
        "                 curve: its CURVE relay on P+2 and P+3\n"
        "  --scenario S   udp (default), parallel, zmq, rabbitmq, acks, "
        "curve,\n"
        "                 or all\n"
        "  --ack A        the client's ack point in the relay halves: "
        "accepted\n"
        "                 (default), delivered or none (acks: all three)\n"
        "  --acks-on S    acks: the transport of scenario S (udp, parallel, "
        "zmq,\n"
        "                 rabbitmq; default udp)\n"
        "  --amqp-port P  rabbitmq: use the broker on 127.0.0.1:P "
        "(guest/guest)\n"
        "                 instead of starting a private rabbitmq-server\n"
        "  --relay PATH   evrelayd (default: next to this program)\n"
        "  --ctl PATH     evrelayctl (default: next to this program)\n"
        "  -v             show the relay's, evrelayctl's and the broker's "
        "output\n");
}

int main(int argc, char *argv[])
{
    s_bench_t bench = {.n = 200000,
                       .runs = 5,
                       .port_base = 17950,
                       .scenario = "udp",
                       .acks_on = "udp"};
    char *relay_path = s_sibling(argv[0], "evrelayd");
    char *ctl_path = s_sibling(argv[0], "evrelayctl");
    bench.relay = relay_path;
    bench.ctl = ctl_path;
    static const struct option longopts[] = {
        {"relay", required_argument, 0, 'r'},
        {"ctl", required_argument, 0, 'c'},
        {"runs", required_argument, 0, 'R'},
        {"port-base", required_argument, 0, 'p'},
        {"scenario", required_argument, 0, 'S'},
        {"amqp-port", required_argument, 0, 'A'},
        {"ack", required_argument, 0, 'a'},
        {"acks-on", required_argument, 0, 'O'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    bool usage_error = false;
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
            case 'S':
                bench.scenario = optarg;
                break;
            case 'A':
                bench.amqp_given = atoi(optarg);
                usage_error |= bench.amqp_given < 1 || bench.amqp_given > 65535;
                break;
            case 'O':
                bench.acks_on = optarg;
                break;
            case 'a':
                if (!strcmp(optarg, "accepted"))
                    bench.ack = EVR_ACK_ACCEPTED;
                else if (!strcmp(optarg, "delivered"))
                    bench.ack = EVR_ACK_DELIVERED;
                else if (!strcmp(optarg, "none"))
                    bench.ack = EVR_ACK_NONE;
                else
                    usage_error = true;
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
                usage_error = true;
                break;
        }
    }
    if (usage_error || bench.n < 1 || bench.runs < 1 || bench.port_base < 1 ||
        bench.port_base > 65532 || optind != argc ||
        !s_scenario_valid(bench.scenario) || !s_scenario_valid(bench.acks_on) ||
        !strcmp(bench.acks_on, "acks") || !strcmp(bench.acks_on, "curve") ||
        !strcmp(bench.acks_on, "all")) {
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
    pid_t relay = -1;
    if (access(bench.relay, X_OK) || access(bench.ctl, X_OK)) {
        fprintf(stderr, "evrelay-bench: need %s and %s (see --relay, --ctl)\n",
                bench.relay, bench.ctl);
        goto done;
    }
    relay = s_relay_start(&bench, NULL);
    bench.relay_pid = relay;
    if (relay < 0)
        goto done;
    int rcvbuf = 0;
    int probe = s_udp_socket(&rcvbuf);
    if (probe >= 0)
        close(probe);
    printf("evrelay-bench: %zu events x %d runs, payload ~%d B, "
           "UDP sink SO_RCVBUF reads %d B (asked %d; Linux doubles it)\n",
           bench.n, bench.runs, S_PAYLOAD_BYTES, rcvbuf, S_SINK_RCVBUF);
    rc = 0;
    for (size_t i = 0; i < S_SCENARIOS && !s_interrupted; i++) {
        if (strcmp(bench.scenario, "all") &&
            strcmp(bench.scenario, s_scenarios[i].name))
            continue;
        if (s_scenario_run(&bench, &s_scenarios[i]))
            rc = 1;
    }
    if (s_interrupted)
        rc = 1;
done:
    s_stop_pid(relay, S_STOP_GRACE_MS);
    free(relay_path);
    free(ctl_path);
    return rc;
}

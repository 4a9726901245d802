/*  evrelay_cluster_bench.c - what the replicated table costs.

    Starts its own relays (evrelayd processes on loopback, stopped by PID
    at the end) and measures:

      1. memory per subscription: the RSS growth of a relay filled with N
         subscriptions (default 100,000: E events x N/E UDP sockets),
         without the cluster (the table alone) and with --cluster and
         --data-dir (table + replicated records + log);
      2. the subscribe rate of that fill (control requests pipelined, 256
         in flight), with the relay's fsync policy (default batch: one
         fsync before each answer);
      3. join: the time from starting an empty relay with --peer at the
         filled one until it reports ready with every record;
      4. dispatch: events/s through one relay (raised with libevrelay,
         counted when acked: decoded, looked up, encoded, queued) with
         10,000 distinct subscribed events (the events cycle through all
         of them) next to the rate with 1 subscribed event.

        evrelay-cluster-bench [-n SUBS] [--events E] [--dispatch-n N]
                              [--runs R] [--fsync POLICY] [--port-base P]
                              [--relay PATH] [--dir DIR] [-v]

    Output: one line per measurement, then RESULT lines for scripts.
*/
#include "evr_defaults.h"
#include "evrelay.h"
#include "evrelay.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_WINDOW 256

typedef struct {
    int subs;
    int events;
    int dispatch_n;
    int runs;
    const char *fsync;
    int port_base;
    char relay[PATH_MAX];
    char dir[PATH_MAX];
    bool verbose;
} s_opts_t;

//  One relay process of the bench.
typedef struct {
    pid_t pid;
    char ingest[64], control[64], cluster[64];
    void *ctl; //  DEALER to its control socket
} s_relay_t;

static void *s_ctx;
static uint64_t s_next_id;

//  Monotonic clock, seconds.
static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

//  Sleep ms milliseconds.
static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

//  The resident set size of pid, KiB (-1 when unknown).
static long s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

//  Start evrelayd with the relay's endpoints and extra arguments (a NULL
//  terminated list). Returns 0 or -1.
static int s_relay_start(s_relay_t *r, const s_opts_t *o, int port,
                         const char *const *extra)
{
    snprintf(r->ingest, sizeof r->ingest, "tcp://127.0.0.1:%d", port);
    snprintf(r->control, sizeof r->control, "tcp://127.0.0.1:%d", port + 1);
    snprintf(r->cluster, sizeof r->cluster, "tcp://127.0.0.1:%d", port + 2);
    const char *argv[32] = {o->relay, "--ingest", r->ingest, "--control",
                            r->control};
    int n = 5;
    for (const char *const *e = extra; e && *e && n < 31; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0) {
        if (!o->verbose) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(o->relay, (char *const *)argv);
        _exit(127);
    }
    r->ctl = zmq_socket(s_ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(r->ctl, ZMQ_LINGER, &linger, sizeof linger);
    return zmq_connect(r->ctl, r->control);
}

//  Stop a relay by PID (SIGTERM, then SIGKILL after 10 s).
static void s_relay_stop(s_relay_t *r)
{
    if (r->ctl)
        zmq_close(r->ctl);
    r->ctl = NULL;
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        s_sleep_ms(10);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

//  Send one control request (params: JSON text or NULL). Returns 0 or -1.
static int s_ctl_send(s_relay_t *r, const char *method, const char *params)
{
    Evrelay__ControlRequest req = EVRELAY__CONTROL_REQUEST__INIT;
    req.version = EVR_PROTOCOL_VERSION;
    req.id = ++s_next_id;
    req.method = (char *)method;
    req.params_json = (char *)params;
    uint8_t buf[1024];
    size_t len = evrelay__control_request__get_packed_size(&req);
    if (len > sizeof buf)
        return -1;
    evrelay__control_request__pack(&req, buf);
    return zmq_send(r->ctl, buf, len, 0) == (int)len ? 0 : -1;
}

//  Receive one control reply within timeout_ms. Returns its result (new
//  JSON value), or NULL on an error answer or timeout (*timed_out set).
static json_t *s_ctl_recv(s_relay_t *r, int timeout_ms, bool *timed_out)
{
    zmq_pollitem_t item = {r->ctl, 0, ZMQ_POLLIN, 0};
    *timed_out = false;
    if (zmq_poll(&item, 1, timeout_ms) <= 0) {
        *timed_out = true;
        return NULL;
    }
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, r->ctl, 0) < 0) {
        zmq_msg_close(&msg);
        return NULL;
    }
    Evrelay__ControlReply *reply = evrelay__control_reply__unpack(
        NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    zmq_msg_close(&msg);
    json_t *result = NULL;
    if (reply && reply->result_json)
        result = json_loads(reply->result_json, JSON_DECODE_ANY, NULL);
    if (reply)
        evrelay__control_reply__free_unpacked(reply, NULL);
    return result;
}

//  One control call. Returns the result (new reference) or NULL.
static json_t *s_ctl_call(s_relay_t *r, const char *method, int timeout_ms)
{
    bool timed_out;
    if (s_ctl_send(r, method, NULL))
        return NULL;
    json_t *result = s_ctl_recv(r, timeout_ms, &timed_out);
    if (timed_out) {
        //  a late answer would be read as the next one's: start over
        zmq_close(r->ctl);
        r->ctl = zmq_socket(s_ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(r->ctl, ZMQ_LINGER, &linger, sizeof linger);
        zmq_connect(r->ctl, r->control);
    }
    return result;
}

//  Whether the relay answers `health` with ready: true.
static bool s_ready(s_relay_t *r)
{
    json_t *health = s_ctl_call(r, "health", 200);
    bool ready = json_is_true(json_object_get(health, "ready"));
    json_decref(health);
    return ready;
}

//  Wait until the relay is ready, at most timeout_s. Returns 0 or -1.
static int s_wait_ready(s_relay_t *r, double timeout_s)
{
    double deadline = s_now() + timeout_s;
    while (s_now() < deadline) {
        if (s_ready(r))
            return 0;
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            fprintf(stderr, "evrelayd exited (run with -v to see why)\n");
            return -1;
        }
        s_sleep_ms(5);
    }
    fprintf(stderr, "evrelayd at %s not ready within %.0f s\n", r->control,
            timeout_s);
    return -1;
}

//  A numeric field of a JSON object, or -1.
static long long s_num(json_t *object, const char *key)
{
    json_t *v = json_object_get(object, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

//  Subscribe `subs` (event, socket) pairs: event i % events, socket
//  udp:127.0.0.1:(port + i / events), pipelined. Returns the number of
//  errors, or -1 on a timeout.
static long s_fill(s_relay_t *r, int subs, int events, int port)
{
    long errors = 0;
    int sent = 0, done = 0;
    while (done < subs) {
        while (sent < subs && sent - done < S_WINDOW) {
            char params[160];
            snprintf(params, sizeof params,
                     "[\"E_SUB%d\",\"udp:127.0.0.1:%d\",86400]", sent % events,
                     port + sent / events);
            if (s_ctl_send(r, "subscribe", params))
                return -1;
            sent++;
        }
        bool timed_out;
        json_t *result = s_ctl_recv(r, 30000, &timed_out);
        if (timed_out)
            return -1;
        errors += !json_is_string(result);
        json_decref(result);
        done++;
    }
    return errors;
}

//  A bound UDP socket on loopback (never read: the kernel drops what
//  overflows it). Returns the fd and its port in *port.
static int s_udp_sink(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

//  Compare doubles for qsort.
static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

//  Raise n events through relay r, cycling over `distinct` event names
//  (E_SUB0 ...); returns events/s until all are acked (-1 on failure).
static double s_dispatch_run(s_relay_t *r, int n, int distinct)
{
    evr_client_opts_t opts = {.queue_events = (size_t)n + 1};
    evr_client_t *client = evr_client_new(r->ingest, &opts);
    if (!client)
        return -1;
    char name[32];
    //  a warm-up event: connection up before the clock starts
    evr_event_t *ev = evr_event_new("E_SUB0");
    evr_raise(client, &ev);
    if (evr_client_flush(client, 10000)) {
        evr_client_destroy(&client);
        return -1;
    }
    double t0 = s_now();
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "E_SUB%d", i % distinct);
        ev = evr_event_new(name);
        evr_event_add_str(ev, "ip", "192.168.2.11");
        evr_event_add_int(ev, "seq", i);
        evr_raise(client, &ev);
    }
    int rc = evr_client_flush(client, 120000);
    double dt = s_now() - t0;
    evr_client_stats_t st;
    evr_client_stats(client, &st);
    evr_client_destroy(&client);
    if (rc || st.dropped)
        return -1;
    return n / dt;
}

//  Wait until no target of the relay has anything queued (at most
//  timeout_s), so that a run does not pay for the previous one's backlog.
static void s_wait_drained(s_relay_t *r, double timeout_s)
{
    double deadline = s_now() + timeout_s;
    while (s_now() < deadline) {
        json_t *stats = s_ctl_call(r, "stats", 5000);
        json_t *targets = json_object_get(stats, "targets");
        long long queued = 0;
        size_t i;
        json_t *t;
        json_array_foreach(targets, i, t) queued += s_num(t, "queued");
        json_decref(stats);
        if (queued == 0)
            return;
        s_sleep_ms(50);
    }
}

//  Memory per subscription of a relay started with `extra` args and
//  filled with o->subs subscriptions; prints and returns bytes/sub (or -1)
//  and the fill rate in *rate. The relay is left running in *r.
static double s_memory(s_relay_t *r, const s_opts_t *o, int port,
                       const char *const *extra, const char *what, double *rate)
{
    if (s_relay_start(r, o, port, extra) || s_wait_ready(r, 15))
        return -1;
    s_sleep_ms(200);
    long before = s_rss_kb(r->pid);
    double t0 = s_now();
    long errors = s_fill(r, o->subs, o->events, 40000);
    double dt = s_now() - t0;
    if (errors) {
        fprintf(stderr, "%s: %ld subscribe(s) failed\n", what, errors);
        return -1;
    }
    s_sleep_ms(200);
    long after = s_rss_kb(r->pid);
    double per = (double)(after - before) * 1024.0 / o->subs;
    *rate = o->subs / dt;
    printf("%-28s %d subscriptions: RSS %ld -> %ld KiB, %.0f bytes per "
           "subscription; filled at %.0f subscribes/s\n",
           what, o->subs, before, after, per, *rate);
    return per;
}

//  Parse the command line into o. Returns 0, 1 (help printed) or -1.
static int s_args(int argc, char **argv, s_opts_t *o)
{
    static const struct option longopts[] = {
        {"subs", required_argument, 0, 'n'},
        {"events", required_argument, 0, 'e'},
        {"dispatch-n", required_argument, 0, 'd'},
        {"runs", required_argument, 0, 'r'},
        {"fsync", required_argument, 0, 'f'},
        {"port-base", required_argument, 0, 'p'},
        {"relay", required_argument, 0, 'R'},
        {"dir", required_argument, 0, 'D'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    *o = (s_opts_t){.subs = 100000,
                    .events = 10000,
                    .dispatch_n = 200000,
                    .runs = 3,
                    .fsync = "batch",
                    .port_base = 18950};
    char self[PATH_MAX - 16];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(o->relay, sizeof o->relay, "%s/evrelayd", slash ? self : ".");
    snprintf(o->dir, sizeof o->dir, "/tmp/evrelay-cluster-bench.%d",
             (int)getpid());
    int c;
    while ((c = getopt_long(argc, argv, "n:vh", longopts, NULL)) != -1) {
        switch (c) {
            case 'n':
                o->subs = atoi(optarg);
                break;
            case 'e':
                o->events = atoi(optarg);
                break;
            case 'd':
                o->dispatch_n = atoi(optarg);
                break;
            case 'r':
                o->runs = atoi(optarg);
                break;
            case 'f':
                o->fsync = optarg;
                break;
            case 'p':
                o->port_base = atoi(optarg);
                break;
            case 'R':
                snprintf(o->relay, sizeof o->relay, "%s", optarg);
                break;
            case 'D':
                snprintf(o->dir, sizeof o->dir, "%s", optarg);
                break;
            case 'v':
                o->verbose = true;
                break;
            case 'h':
                printf("usage: evrelay-cluster-bench [-n SUBS] [--events E] "
                       "[--dispatch-n N] [--runs R]\n"
                       "       [--fsync always|batch|never] [--port-base P] "
                       "[--relay PATH] [--dir DIR] [-v]\n");
                return 1;
            default:
                return -1;
        }
    }
    if (o->subs < 1 || o->events < 1 || o->events > 60000 ||
        o->subs / o->events > 20000 || o->dispatch_n < 1 || o->runs < 1) {
        fprintf(stderr, "bad -n/--events/--dispatch-n/--runs\n");
        return -1;
    }
    return 0;
}

//  Entry point.
int main(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_args(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    s_ctx = zmq_ctx_new();
    char a_dir[PATH_MAX + 8], b_dir[PATH_MAX + 8], fsync_cfg[PATH_MAX + 16];
    mkdir(o.dir, 0755);
    snprintf(a_dir, sizeof a_dir, "%s/a", o.dir);
    snprintf(b_dir, sizeof b_dir, "%s/b", o.dir);
    snprintf(fsync_cfg, sizeof fsync_cfg, "%s/a.conf", o.dir);
    FILE *conf = fopen(fsync_cfg, "w");
    if (conf) {
        //  room for the whole fill: a local subscribe beyond the relay's
        //  subscription limits (docs/OPERATIONS.md 1.8) would be refused
        int room = o.subs > EVR_DEFAULT_MAX_SUBSCRIPTIONS
                       ? o.subs
                       : EVR_DEFAULT_MAX_SUBSCRIPTIONS;
        fprintf(conf,
                "[cluster]\nfsync = %s\n[limits]\nmax_subscriptions = %d\n"
                "max_subscriptions_per_event = %d\n",
                o.fsync, room, room);
        fclose(conf);
    }
    printf("evrelay-cluster-bench: %d subscriptions (%d events x %d "
           "sockets), fsync %s, relay %s\n",
           o.subs, o.events, (o.subs + o.events - 1) / o.events, o.fsync,
           o.relay);
    int failed = 0;
    double rate_plain = 0, rate_cluster = 0;

    //  1, 2: memory and fill, without and with the cluster
    s_relay_t plain = {0};
    const char *plain_args[] = {"--config", fsync_cfg, NULL};
    double mem_plain = s_memory(&plain, &o, o.port_base, plain_args,
                                "table only:", &rate_plain);
    s_relay_stop(&plain);
    s_relay_t a = {0};
    char a_cluster[64];
    snprintf(a_cluster, sizeof a_cluster, "tcp://127.0.0.1:%d",
             o.port_base + 12);
    const char *a_args[] = {"--config",   fsync_cfg,   "--node-id",
                            "bench-a",    "--cluster", a_cluster,
                            "--data-dir", a_dir,       NULL};
    double mem_cluster = s_memory(&a, &o, o.port_base + 10, a_args,
                                  "cluster + persistence:", &rate_cluster);
    failed |= mem_plain < 0 || mem_cluster < 0;

    //  3: join
    double join_ms = -1, compact_ms = -1;
    long long records = -1, compact_records = -1;
    if (mem_cluster >= 0) {
        json_t *st = s_ctl_call(&a, "cluster", 5000);
        long long want = s_num(st, "records");
        json_decref(st);
        s_relay_t b = {0};
        const char *b_args[] = {
            "--node-id",  "bench-b",
            "--cluster",  b_dir /* placeholder, set below */,
            "--peer",     a_cluster,
            "--data-dir", b_dir,
            NULL};
        char b_cluster[64];
        snprintf(b_cluster, sizeof b_cluster, "tcp://127.0.0.1:%d",
                 o.port_base + 22);
        b_args[3] = b_cluster;
        double t0 = s_now();
        if (s_relay_start(&b, &o, o.port_base + 20, b_args) == 0 &&
            s_wait_ready(&b, 120) == 0) {
            join_ms = (s_now() - t0) * 1000;
            st = s_ctl_call(&b, "cluster", 5000);
            records = s_num(st, "records");
            json_decref(st);
            printf("%-28s an empty relay joined (started -> ready) in %.0f "
                   "ms with %lld of %lld records; its RSS %ld KiB\n",
                   "join:", join_ms, records, want, s_rss_kb(b.pid));
            //  its log now holds every record: the next gc tick compacts
            for (int i = 0; i < 50 && compact_ms < 0; i++) {
                s_sleep_ms(100);
                st = s_ctl_call(&b, "cluster", 5000);
                json_t *store = json_object_get(st, "store");
                if (s_num(store, "compactions") > 0) {
                    compact_ms = (double)s_num(store, "last_compaction_ms");
                    compact_records = s_num(store, "snapshot_records");
                }
                json_decref(st);
            }
            printf("%-28s the joined relay compacted its log: %lld records "
                   "in %.0f ms (core thread)\n",
                   "compaction:", compact_records, compact_ms);
        }
        failed |= join_ms < 0 || records != want;
        s_relay_stop(&b);
    }
    s_relay_stop(&a);

    //  4: dispatch with 1 and with 10,000 subscribed events
    double eps[2] = {-1, -1};
    int distinct[2] = {1, 10000};
    int sink_port;
    int sink = s_udp_sink(&sink_port);
    s_relay_t d = {0};
    char d_cfg[PATH_MAX + 16];
    snprintf(d_cfg, sizeof d_cfg, "%s/d.conf", o.dir);
    conf = fopen(d_cfg, "w");
    if (conf) {
        //  room for a whole run: the sink is slower than dispatch, and a
        //  dropped copy would skip part of the work measured
        fprintf(conf, "[limits]\ntarget_queue = %d\n", o.dispatch_n + 16);
        fclose(conf);
    }
    const char *d_args[] = {"--config", d_cfg, NULL};
    if (sink >= 0 && s_relay_start(&d, &o, o.port_base + 30, d_args) == 0 &&
        s_wait_ready(&d, 15) == 0) {
        bool ok = true;
        for (int i = 0; i < distinct[1] && ok; i++) {
            char params[128];
            snprintf(params, sizeof params,
                     "[\"E_SUB%d\",\"udp:127.0.0.1:%d\",86400]", i, sink_port);
            bool timed_out;
            json_t *result = NULL;
            ok = s_ctl_send(&d, "subscribe", params) == 0 &&
                 (result = s_ctl_recv(&d, 5000, &timed_out)) != NULL;
            json_decref(result);
        }
        //  the two cases alternate, so a change of the machine's load
        //  hits both alike
        double runs[2][64];
        int nruns = o.runs < 64 ? o.runs : 64;
        for (int run = 0; run < nruns && ok; run++)
            for (int k = 0; k < 2; k++) {
                s_wait_drained(&d, 60);
                runs[k][run] = s_dispatch_run(&d, o.dispatch_n, distinct[k]);
            }
        for (int k = 0; k < 2 && ok; k++) {
            qsort(runs[k], (size_t)nruns, sizeof *runs[k], s_cmp_double);
            eps[k] = runs[k][nruns / 2];
            printf("%-28s %d events over %d subscribed event name(s), 1 "
                   "subscriber each: %.0f events/s (median of %d)\n",
                   "dispatch:", o.dispatch_n, distinct[k], eps[k], nruns);
        }
        json_t *stats = s_ctl_call(&d, "stats", 5000);
        json_t *ingest = json_object_get(stats, "ingest");
        printf("%-28s received %lld, queued %lld, queue full %lld\n", "",
               s_num(ingest, "received"), s_num(ingest, "delivered_to_queues"),
               s_num(ingest, "queue_full"));
        json_decref(stats);
    }
    failed |= eps[0] < 0 || eps[1] < 0;
    s_relay_stop(&d);
    if (sink >= 0)
        close(sink);

    printf("RESULT mem_bytes_per_sub_table=%.0f mem_bytes_per_sub_cluster=%.0f "
           "subscribe_rate_plain=%.0f subscribe_rate_cluster=%.0f\n",
           mem_plain, mem_cluster, rate_plain, rate_cluster);
    printf("RESULT join_ms=%.0f join_records=%lld compaction_ms=%.0f "
           "compaction_records=%lld\n",
           join_ms, records, compact_ms, compact_records);
    printf("RESULT dispatch_eps_1=%.0f dispatch_eps_10000=%.0f ratio=%.3f\n",
           eps[0], eps[1], eps[0] > 0 ? eps[1] / eps[0] : 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", o.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", o.dir);
    zmq_ctx_term(s_ctx);
    return failed ? 1 : 0;
}

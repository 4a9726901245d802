/*  evr_blast.c - raise many numbered events through libevrelay.

    evr-blast [-e ENDPOINTS] [-n COUNT] [-p PAD_BYTES] [-r RATE] [-t MS]
              [-E EVENT] [-a accepted|delivered|none] [-c CLIENTS]
              [-T THREADS] [-I PRODUCER] [-q QUEUE] [-w WINDOW]
              [-R RESEND_MS] [-o] [-L] [-X EVERY]

    Raises COUNT events (default 100000) named EVENT (default E_BLAST), each
    with the named params seq (int, 1..COUNT) and pad (a string of PAD_BYTES
    'x', default 32), optionally paced at RATE events per second. Then waits
    at most MS ms (default 60000) until every event is acknowledged and
    prints one JSON line with the client's counters:

      {"count":N,"flushed":true,"elapsed_ms":T,"raised":..,"sent":..,
       "acked":..,"resent":..,"dropped":..,"rejected":..,"queued":..,
       "in_flight":..,"failed":..}

    Options beyond that:
      -a POINT    the client's ack point (default accepted)
      -I P        put the int param p = P (a producer number) FIRST in
                  every event, before seq: {"p":P,"seq":N,"pad":"..."}
      -c CLIENTS  run CLIENTS clients (one thread each, default 1); client
                  k raises its own COUNT events with p = P + k (implies -I,
                  P default 0); the counters printed are the sums
      -T THREADS  raising threads per client (default 1), thread j raising
                  the seqs j+1, j+1+THREADS, ... (order is per thread then)
      -r RATE     the total rate of all clients and threads
      -q, -w, -R  the client's queue_events, window_events, resend_ms
      -o          raise with evr_raise_cb and add the callbacks' outcome
                  counts: "outcomes":{"acked":..,"failed":..,
                  "rejected":..,"dropped":..,"missing":..} (missing =
                  events whose callback never ran: must be 0)
      -L          print {"phase":"raised",...} with the counters once
                  every event is raised, before waiting for the acks
      -X EVERY    every EVERY-th seq gets a pad of 20000 bytes 0x01: small
                  enough for the client (protobuf), too large for the
                  relay once JSON-escaped (\u0001, 6 bytes each), so the
                  relay rejects it (Ack.rejected)

    Exit status: 0 when everything was acknowledged (or, with NONE, sent),
    1 when the flush timed out or a raise failed, 2 on a usage error. Used
    by the integration tests tests/integration/test_reliability.py and
    test_ack_points.py.
*/
#include "evrelay.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  The most clients and raising threads per client.
#define S_MAX_CLIENTS 64
#define S_MAX_THREADS 64

//  Settings, from the command line.
typedef struct {
    const char *endpoints;
    const char *name;
    long long count, pad, rate, timeout_ms;
    long long producer; //  -1 = no p param
    int clients, threads;
    bool outcomes, phase;
    long long poison; //  every poison-th seq is refused by the relay; 0 = none
    evr_client_opts_t opts;
    char *padding;
    char *poisoned; //  S_POISON_BYTES of 0x01, with -X
} s_args_t;

//  -X: a pad that JSON-escapes to 6 times its size (over 65000 bytes).
#define S_POISON_BYTES 20000

//  Outcome counters of the callbacks (atomics), one set per process.
static uint64_t s_outcome[4];

//  One client and its raising threads.
typedef struct {
    const s_args_t *args;
    int index;
    evr_client_t *client;
    long long failed_raises; //  atomic
    int64_t start_ms;
} s_client_t;

//  One raising thread.
typedef struct {
    s_client_t *c;
    int thread;
} s_raiser_t;

//  Milliseconds on the monotonic clock.
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Parse a non-negative integer argument; exits 2 on junk.
static long long s_number(const char *text, const char *what)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || v < 0) {
        fprintf(stderr, "evr-blast: bad %s '%s'\n", what, text);
        exit(2);
    }
    return v;
}

//  evr_raise_cb callback: count the outcome.
static void s_on_done(void *arg, evr_done_t outcome)
{
    if ((unsigned)outcome < 4)
        __atomic_add_fetch(&s_outcome[outcome], 1, __ATOMIC_RELAXED);
}

//  Build and raise event seq of a client. Returns 0 or -1.
static int s_raise_one(s_client_t *c, long long seq)
{
    const s_args_t *a = c->args;
    evr_event_t *event = evr_event_new(a->name);
    if (!event)
        return -1;
    int rc = 0;
    if (a->producer >= 0)
        rc |= evr_event_add_int(event, "p", a->producer + c->index);
    rc |= evr_event_add_int(event, "seq", seq);
    if (a->poison && seq % a->poison == 0)
        rc |= evr_event_add_strn(event, "pad", a->poisoned, S_POISON_BYTES);
    else
        rc |= evr_event_add_str(event, "pad", a->padding);
    if (rc) {
        evr_event_destroy(&event);
        if (a->outcomes)
            s_on_done(NULL, EVR_DONE_REJECTED);
        return -1;
    }
    return a->outcomes ? evr_raise_cb(c->client, &event, s_on_done, NULL)
                       : evr_raise(c->client, &event);
}

//  A raising thread: seqs thread+1, thread+1+threads, ..., paced so that
//  all threads of all clients together stay at the rate.
static void *s_raiser(void *arg)
{
    s_raiser_t *r = arg;
    s_client_t *c = r->c;
    const s_args_t *a = c->args;
    long long share = (long long)a->clients * a->threads;
    long long n = 0;
    for (long long seq = r->thread + 1; seq <= a->count; seq += a->threads) {
        if (s_raise_one(c, seq))
            __atomic_add_fetch(&c->failed_raises, 1, __ATOMIC_RELAXED);
        n++;
        //  pacing: never ahead of n / (rate / share) seconds since start
        if (a->rate > 0 && n % 100 == 0) {
            int64_t due = c->start_ms + n * 1000 * share / a->rate;
            int64_t now = s_now_ms();
            if (due > now)
                usleep((useconds_t)(due - now) * 1000);
        }
    }
    return NULL;
}

//  A client's thread: start its raisers and wait for them.
static void *s_client_run(void *arg)
{
    s_client_t *c = arg;
    s_raiser_t raisers[S_MAX_THREADS];
    pthread_t threads[S_MAX_THREADS];
    for (int t = 0; t < c->args->threads; t++) {
        raisers[t] = (s_raiser_t){c, t};
        pthread_create(&threads[t], NULL, s_raiser, &raisers[t]);
    }
    for (int t = 0; t < c->args->threads; t++)
        pthread_join(threads[t], NULL);
    return NULL;
}

//  Add b's counters to *sum.
static void s_stats_add(evr_client_stats_t *sum, const evr_client_stats_t *b)
{
    sum->raised += b->raised;
    sum->sent += b->sent;
    sum->acked += b->acked;
    sum->resent += b->resent;
    sum->dropped += b->dropped;
    sum->rejected += b->rejected;
    sum->queued += b->queued;
    sum->in_flight += b->in_flight;
    sum->failed += b->failed;
}

//  The sum of every client's counters.
static evr_client_stats_t s_stats(s_client_t *clients, int n)
{
    evr_client_stats_t sum = {0};
    for (int i = 0; i < n; i++) {
        evr_client_stats_t st;
        evr_client_stats(clients[i].client, &st);
        s_stats_add(&sum, &st);
    }
    return sum;
}

//  Print the counters as JSON fields (no braces).
static void s_print_stats(const evr_client_stats_t *st)
{
    printf("\"raised\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
           ",\"resent\":%" PRIu64 ",\"dropped\":%" PRIu64
           ",\"rejected\":%" PRIu64 ",\"queued\":%" PRIu64
           ",\"in_flight\":%" PRIu64 ",\"failed\":%" PRIu64,
           st->raised, st->sent, st->acked, st->resent, st->dropped,
           st->rejected, st->queued, st->in_flight, st->failed);
}

//  Parse an ack point name; exits 2 on junk.
static evr_ack_point_t s_ack_point(const char *text)
{
    if (!strcmp(text, "accepted"))
        return EVR_ACK_ACCEPTED;
    if (!strcmp(text, "delivered"))
        return EVR_ACK_DELIVERED;
    if (!strcmp(text, "none"))
        return EVR_ACK_NONE;
    fprintf(stderr, "evr-blast: bad ack point '%s'\n", text);
    exit(2);
}

//  Parse the command line into *a; exits 2 on a usage error.
static void s_parse(int argc, char **argv, s_args_t *a)
{
    *a = (s_args_t){.endpoints = "tcp://127.0.0.1:7950",
                    .name = "E_BLAST",
                    .count = 100000,
                    .pad = 32,
                    .timeout_ms = 60000,
                    .producer = -1,
                    .clients = 1,
                    .threads = 1};
    //  CURVE, as evrelayctl takes it from the environment
    a->opts.cert = getenv("EVRELAY_CERT");
    a->opts.server_key = getenv("EVRELAY_SERVER_KEY");
    int opt;
    while ((opt = getopt(argc, argv, "e:n:p:r:t:E:a:c:T:I:q:w:R:oLX:h")) !=
           -1) {
        switch (opt) {
            case 'e':
                a->endpoints = optarg;
                break;
            case 'n':
                a->count = s_number(optarg, "count");
                break;
            case 'p':
                a->pad = s_number(optarg, "pad size");
                break;
            case 'r':
                a->rate = s_number(optarg, "rate");
                break;
            case 't':
                a->timeout_ms = s_number(optarg, "timeout");
                break;
            case 'E':
                a->name = optarg;
                break;
            case 'a':
                a->opts.ack_point = s_ack_point(optarg);
                break;
            case 'c':
                a->clients = (int)s_number(optarg, "client count");
                break;
            case 'T':
                a->threads = (int)s_number(optarg, "thread count");
                break;
            case 'I':
                a->producer = s_number(optarg, "producer number");
                break;
            case 'q':
                a->opts.queue_events = (size_t)s_number(optarg, "queue");
                break;
            case 'w':
                a->opts.window_events = (size_t)s_number(optarg, "window");
                break;
            case 'R':
                a->opts.resend_ms = (int)s_number(optarg, "resend");
                break;
            case 'o':
                a->outcomes = true;
                break;
            case 'L':
                a->phase = true;
                break;
            case 'X':
                a->poison = s_number(optarg, "poison interval");
                break;
            default:
                fprintf(stderr, "usage: evr-blast [-e ENDPOINTS] [-n COUNT] "
                                "[-p PAD_BYTES] [-r RATE] [-t MS] [-E EVENT]\n"
                                "                 [-a accepted|delivered|none] "
                                "[-c CLIENTS] [-T THREADS] [-I PRODUCER]\n"
                                "                 [-q QUEUE] [-w WINDOW] "
                                "[-R RESEND_MS] [-o] [-L] [-X EVERY]\n");
                exit(2);
        }
    }
    if (a->clients < 1 || a->clients > S_MAX_CLIENTS || a->threads < 1 ||
        a->threads > S_MAX_THREADS) {
        fprintf(stderr, "evr-blast: 1..%d clients, 1..%d threads\n",
                S_MAX_CLIENTS, S_MAX_THREADS);
        exit(2);
    }
    if (a->clients > 1 && a->producer < 0)
        a->producer = 0;
}

int main(int argc, char **argv)
{
    s_args_t a;
    s_parse(argc, argv, &a);
    a.padding = malloc((size_t)a.pad + 1);
    if (!a.padding)
        return 1;
    memset(a.padding, 'x', (size_t)a.pad);
    a.padding[a.pad] = 0;
    a.poisoned = malloc(S_POISON_BYTES);
    if (!a.poisoned)
        return 1;
    memset(a.poisoned, 1, S_POISON_BYTES);

    s_client_t clients[S_MAX_CLIENTS];
    pthread_t threads[S_MAX_CLIENTS];
    for (int i = 0; i < a.clients; i++) {
        clients[i] = (s_client_t){.args = &a, .index = i};
        clients[i].client = evr_client_new(a.endpoints, &a.opts);
        if (!clients[i].client) {
            fprintf(stderr, "evr-blast: cannot create a client for '%s'\n",
                    a.endpoints);
            return 1;
        }
    }
    int64_t start = s_now_ms();
    for (int i = 0; i < a.clients; i++) {
        clients[i].start_ms = start;
        pthread_create(&threads[i], NULL, s_client_run, &clients[i]);
    }
    long long failed = 0;
    for (int i = 0; i < a.clients; i++) {
        pthread_join(threads[i], NULL);
        failed += clients[i].failed_raises;
    }
    if (a.phase) {
        evr_client_stats_t st = s_stats(clients, a.clients);
        printf("{\"phase\":\"raised\",\"elapsed_ms\":%" PRId64 ",",
               s_now_ms() - start);
        s_print_stats(&st);
        printf("}\n");
        fflush(stdout);
    }
    //  every client gets what is left of the timeout
    bool flushed = true;
    for (int i = 0; i < a.clients; i++) {
        int64_t left = start + a.timeout_ms - s_now_ms();
        if (left < 0)
            left = 0;
        flushed &= evr_client_flush(clients[i].client, (int)left) == 0;
    }
    int64_t elapsed = s_now_ms() - start;
    evr_client_stats_t st = s_stats(clients, a.clients);
    for (int i = 0; i < a.clients; i++)
        evr_client_destroy(&clients[i].client);
    //  destroy ran every callback still due (DROPPED)
    printf("{\"count\":%lld,\"clients\":%d,\"failed_raises\":%lld,"
           "\"flushed\":%s,\"elapsed_ms\":%" PRId64 ",",
           a.count, a.clients, failed, flushed ? "true" : "false", elapsed);
    s_print_stats(&st);
    if (a.outcomes) {
        uint64_t total = (uint64_t)a.count * (uint64_t)a.clients, seen = 0;
        for (int i = 0; i < 4; i++)
            seen += __atomic_load_n(&s_outcome[i], __ATOMIC_RELAXED);
        printf(",\"outcomes\":{\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"rejected\":%" PRIu64 ",\"dropped\":%" PRIu64
               ",\"missing\":%" PRId64 "}",
               s_outcome[EVR_DONE_ACKED], s_outcome[EVR_DONE_FAILED],
               s_outcome[EVR_DONE_REJECTED], s_outcome[EVR_DONE_DROPPED],
               (int64_t)(total - seen));
    }
    printf("}\n");
    fflush(stdout);
    free(a.padding);
    free(a.poisoned);
    return flushed && failed == 0 ? 0 : 1;
}

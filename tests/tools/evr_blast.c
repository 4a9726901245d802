/*  evr_blast.c - raise many numbered events through libevrelay.

    evr-blast [-e ENDPOINTS] [-n COUNT] [-p PAD_BYTES] [-r RATE] [-t MS]
              [-E EVENT]

    Raises COUNT events (default 100000) named EVENT (default E_BLAST), each
    with the named params seq (int, 1..COUNT) and pad (a string of PAD_BYTES
    'x', default 32), optionally paced at RATE events per second. Then waits
    at most MS ms (default 60000) until every event is acknowledged and
    prints one JSON line with the client's counters:

      {"count":N,"flushed":true,"elapsed_ms":T,"raised":..,"sent":..,
       "acked":..,"resent":..,"dropped":..,"rejected":..,"queued":..,
       "in_flight":..}

    Exit status: 0 when everything was acknowledged, 1 when the flush timed
    out or a raise failed, 2 on a usage error. Used by the integration test
    tests/integration/test_reliability.py.
*/
#include "evrelay.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
    const char *endpoints = "tcp://127.0.0.1:7950";
    const char *name = "E_BLAST";
    long long count = 100000, pad = 32, rate = 0, timeout_ms = 60000;
    int opt;
    while ((opt = getopt(argc, argv, "e:n:p:r:t:E:h")) != -1) {
        switch (opt) {
            case 'e':
                endpoints = optarg;
                break;
            case 'n':
                count = s_number(optarg, "count");
                break;
            case 'p':
                pad = s_number(optarg, "pad size");
                break;
            case 'r':
                rate = s_number(optarg, "rate");
                break;
            case 't':
                timeout_ms = s_number(optarg, "timeout");
                break;
            case 'E':
                name = optarg;
                break;
            default:
                fprintf(stderr,
                        "usage: evr-blast [-e ENDPOINTS] [-n COUNT] "
                        "[-p PAD_BYTES] [-r RATE] [-t MS] [-E EVENT]\n");
                return 2;
        }
    }
    char *padding = malloc((size_t)pad + 1);
    if (!padding)
        return 1;
    memset(padding, 'x', (size_t)pad);
    padding[pad] = 0;

    evr_client_t *client = evr_client_new(endpoints, NULL);
    if (!client) {
        fprintf(stderr, "evr-blast: cannot create a client for '%s'\n",
                endpoints);
        free(padding);
        return 1;
    }
    int64_t start = s_now_ms();
    long long failed = 0;
    for (long long seq = 1; seq <= count; seq++) {
        evr_event_t *event = evr_event_new(name);
        if (!event || evr_event_add_int(event, "seq", seq) ||
            evr_event_add_str(event, "pad", padding) ||
            evr_raise(client, &event)) {
            evr_event_destroy(&event);
            failed++;
        }
        //  pacing: never ahead of seq / rate seconds since the start
        if (rate > 0 && seq % 100 == 0) {
            int64_t due = start + seq * 1000 / rate;
            int64_t now = s_now_ms();
            if (due > now)
                usleep((useconds_t)(due - now) * 1000);
        }
    }
    bool flushed = evr_client_flush(client, (int)timeout_ms) == 0;
    int64_t elapsed = s_now_ms() - start;
    evr_client_stats_t st;
    evr_client_stats(client, &st);
    printf("{\"count\":%lld,\"failed_raises\":%lld,\"flushed\":%s,"
           "\"elapsed_ms\":%" PRId64 ",\"raised\":%" PRIu64 ",\"sent\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"resent\":%" PRIu64 ",\"dropped\":%" PRIu64
           ",\"rejected\":%" PRIu64 ",\"queued\":%" PRIu64
           ",\"in_flight\":%" PRIu64 "}\n",
           count, failed, flushed ? "true" : "false", elapsed, st.raised,
           st.sent, st.acked, st.resent, st.dropped, st.rejected, st.queued,
           st.in_flight);
    fflush(stdout);
    evr_client_destroy(&client);
    free(padding);
    return flushed && failed == 0 ? 0 : 1;
}

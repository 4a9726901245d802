/*  evr_example.c - raise one event through libevrelay.

    evrelay-example [-e ENDPOINTS] EVENT [name=value ...]

    Each name=value becomes a named param: an integer when the value is all
    digits, else a string. The program waits until the relay acks the
    event (at most 5 s), prints the client's counters, and exits 0 when the
    event was acknowledged.
*/

#include "evrelay.h"
#include "evr_defaults.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  How long to wait for the ack before giving up, ms.
#define S_FLUSH_TIMEOUT_MS 5000

//  --------------------------------------------------------------------------
//  Print the usage text on stream.

static void s_usage(FILE *stream)
{
    fprintf(stream,
            "usage: evrelay-example [-e ENDPOINTS] EVENT [name=value ...]\n"
            "  -e ENDPOINTS  comma-separated relay ingest endpoints "
            "(default %s)\n"
            "  a value of only digits is sent as an integer\n",
            EVR_DEFAULT_INGEST);
}

//  --------------------------------------------------------------------------
//  Parse value as an integer when it is all digits and fits. Returns 0 and
//  sets *out, or -1.

static int s_parse_int(const char *value, int64_t *out)
{
    if (!*value)
        return -1;
    for (const char *c = value; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
    }
    errno = 0;
    unsigned long long parsed = strtoull(value, NULL, 10);
    if (errno == ERANGE || parsed > INT64_MAX)
        return -1;
    *out = (int64_t)parsed;
    return 0;
}

//  --------------------------------------------------------------------------
//  Add one name=value argument to the event. Returns 0 or -1.

static int s_add_param(evr_event_t *event, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    char *name = strndup(arg, (size_t)(eq - arg));
    if (!name)
        return -1;
    int64_t number;
    int rc = s_parse_int(eq + 1, &number) == 0
                 ? evr_event_add_int(event, name, number)
                 : evr_event_add_str(event, name, eq + 1);
    free(name);
    return rc;
}

int main(int argc, char *argv[])
{
    const char *endpoints = EVR_DEFAULT_INGEST;
    int opt;
    while ((opt = getopt(argc, argv, "e:h")) != -1) {
        switch (opt) {
            case 'e':
                endpoints = optarg;
                break;
            case 'h':
                s_usage(stdout);
                return 0;
            default:
                s_usage(stderr);
                return 2;
        }
    }
    if (optind >= argc) {
        s_usage(stderr);
        return 2;
    }
    evr_event_t *event = evr_event_new(argv[optind]);
    if (!event) {
        fprintf(stderr, "evrelay-example: bad event name '%s'\n", argv[optind]);
        return 2;
    }
    for (int i = optind + 1; i < argc; i++) {
        if (s_add_param(event, argv[i]) == -1) {
            fprintf(stderr,
                    "evrelay-example: bad param '%s' (want name=value)\n",
                    argv[i]);
            evr_event_destroy(&event);
            return 2;
        }
    }
    evr_client_t *client = evr_client_new(endpoints, NULL);
    if (!client) {
        fprintf(stderr, "evrelay-example: cannot use endpoints '%s'\n",
                endpoints);
        evr_event_destroy(&event);
        return 2;
    }
    int rc = 0;
    if (evr_raise(client, &event) == -1) {
        fprintf(stderr, "evrelay-example: event refused (too large?)\n");
        rc = 1;
    } else if (evr_client_flush(client, S_FLUSH_TIMEOUT_MS) == -1) {
        fprintf(stderr, "evrelay-example: no ack within %d ms\n",
                S_FLUSH_TIMEOUT_MS);
        rc = 1;
    }
    evr_client_stats_t stats;
    evr_client_stats(client, &stats);
    printf("raised=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64
           " resent=%" PRIu64 " dropped=%" PRIu64 " rejected=%" PRIu64
           " queued=%" PRIu64 " in_flight=%" PRIu64 "\n",
           stats.raised, stats.sent, stats.acked, stats.resent, stats.dropped,
           stats.rejected, stats.queued, stats.in_flight);
    if (rc == 0 && stats.rejected > 0)
        rc = 1; //  flushed, but the relay refused it
    evr_client_destroy(&client);
    return rc;
}

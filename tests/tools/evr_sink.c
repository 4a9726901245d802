/*  evr_sink.c - a UDP sink that keeps up with a relay and says exactly
    which (producer, seq) pairs it got.

    evr-sink -n COUNT [-P PRODUCERS] [-u PORT] [-o SUMMARY] [-D MAX_LISTED]
             [-C]

    Binds a UDP socket on 127.0.0.1:PORT (default 0: any free port) with
    an 8 MiB receive buffer, prints "port N" on stdout, and receives
    datagrams with recvmmsg. Each datagram is an event from evr-blast with
    int params p (producer, 0..PRODUCERS-1; absent = 0) and seq
    (1..COUNT); a bitmap per producer records what arrived, repeats are
    counted as duplicates. Anything else is counted as junk.

    It stops on SIGTERM or SIGINT (with -C also once every producer has
    all COUNT seqs), and then writes one JSON object (to SUMMARY, or
    stdout):

      {"received":N,"junk":N,"rcvbuf":BYTES,"producers":[
        {"p":0,"unique":N,"missing":N,"duplicates":N,
         "missing_seqs":[...],"duplicate_seqs":[...]},...]}

    missing_seqs and duplicate_seqs list at most MAX_LISTED (default 100)
    seqs each, lowest first. Used by tests/integration/test_ack_points.py.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  Receive buffer: holds about 40,000 small datagrams of a burst.
#define S_RCVBUF (8 * 1024 * 1024)

//  Datagrams per recvmmsg call, and the largest one we look at.
#define S_BATCH 64
#define S_DGRAM 2048

//  The most producers.
#define S_MAX_PRODUCERS 64

//  Per producer: what arrived.
typedef struct {
    uint8_t *seen;   //  count + 1 bytes: times seq arrived (saturating)
    uint64_t unique; //  seqs seen at least once
    uint64_t dups;   //  arrivals beyond the first
} s_producer_t;

static volatile sig_atomic_t s_stop;

//  Signal handler: stop receiving, then write the summary.
static void s_on_signal(int sig)
{
    s_stop = 1;
}

//  The integer value of "key": in data, or -1 when absent or not a number.
static long long s_int_param(const char *data, size_t len, const char *key)
{
    size_t klen = strlen(key);
    const char *p = memmem(data, len, key, klen);
    if (!p)
        return -1;
    p += klen;
    const char *end = data + len;
    long long v = 0;
    bool any = false;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        any = true;
        p++;
    }
    return any ? v : -1;
}

//  Print at most max seqs of producer p, lowest first, as a JSON array:
//  the missing ones, or the duplicated ones.
static void s_list(FILE *out, const s_producer_t *p, uint64_t count,
                   bool missing, unsigned max)
{
    fputc('[', out);
    unsigned n = 0;
    for (uint64_t seq = 1; seq <= count && n < max; seq++) {
        bool pick = missing ? p->seen[seq] == 0 : p->seen[seq] > 1;
        if (pick)
            fprintf(out, "%s%" PRIu64, n++ ? "," : "", seq);
    }
    fputc(']', out);
}

int main(int argc, char **argv)
{
    uint64_t count = 0;
    int producers = 1, port = 0;
    unsigned listed = 100;
    const char *summary = NULL;
    bool until_complete = false;
    int opt;
    while ((opt = getopt(argc, argv, "n:P:u:o:D:Ch")) != -1) {
        switch (opt) {
            case 'n':
                count = strtoull(optarg, NULL, 10);
                break;
            case 'P':
                producers = atoi(optarg);
                break;
            case 'u':
                port = atoi(optarg);
                break;
            case 'o':
                summary = optarg;
                break;
            case 'D':
                listed = (unsigned)atoi(optarg);
                break;
            case 'C':
                until_complete = true;
                break;
            default:
                fprintf(stderr, "usage: evr-sink -n COUNT [-P PRODUCERS] "
                                "[-u PORT] [-o SUMMARY] [-D MAX_LISTED] "
                                "[-C]\n");
                return 2;
        }
    }
    if (count == 0 || producers < 1 || producers > S_MAX_PRODUCERS) {
        fprintf(stderr, "evr-sink: -n COUNT > 0 and 1..%d producers\n",
                S_MAX_PRODUCERS);
        return 2;
    }
    s_producer_t prod[S_MAX_PRODUCERS] = {{0}};
    for (int i = 0; i < producers; i++)
        if (!(prod[i].seen = calloc(count + 1, 1)))
            return 1;

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rcvbuf = S_RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
                   &(socklen_t){sizeof rcvbuf}) == 0 &&
        rcvbuf < S_RCVBUF) {
        rcvbuf = S_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
                   &(socklen_t){sizeof rcvbuf});
    }
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) ||
        getsockname(fd, (struct sockaddr *)&addr, &alen)) {
        perror("evr-sink: bind");
        return 1;
    }
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    static char bufs[S_BATCH][S_DGRAM];
    struct mmsghdr mm[S_BATCH];
    struct iovec iov[S_BATCH];
    uint64_t received = 0, junk = 0, complete = 0;
    uint64_t want = count * (uint64_t)producers;
    while (!s_stop && !(until_complete && complete >= want)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        for (int i = 0; i < S_BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], S_DGRAM};
            memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, mm, S_BATCH, MSG_DONTWAIT, NULL);
        for (int i = 0; i < n; i++) {
            received++;
            size_t len = mm[i].msg_len;
            long long p = s_int_param(bufs[i], len, "\"p\":");
            long long seq = s_int_param(bufs[i], len, "\"seq\":");
            if (p < 0)
                p = 0;
            if (p >= producers || seq < 1 || (uint64_t)seq > count) {
                junk++;
                continue;
            }
            s_producer_t *pr = &prod[p];
            if (pr->seen[seq] == 0) {
                pr->unique++;
                complete++;
            } else
                pr->dups++;
            if (pr->seen[seq] < 255)
                pr->seen[seq]++;
        }
    }

    FILE *out = summary ? fopen(summary, "w") : stdout;
    if (!out)
        return 1;
    fprintf(out,
            "{\"received\":%" PRIu64 ",\"junk\":%" PRIu64
            ",\"rcvbuf\":%d,\"producers\":[",
            received, junk, rcvbuf);
    for (int i = 0; i < producers; i++) {
        fprintf(out,
                "%s{\"p\":%d,\"unique\":%" PRIu64 ",\"missing\":%" PRIu64
                ",\"duplicates\":%" PRIu64 ",\"missing_seqs\":",
                i ? "," : "", i, prod[i].unique, count - prod[i].unique,
                prod[i].dups);
        s_list(out, &prod[i], count, true, listed);
        fprintf(out, ",\"duplicate_seqs\":");
        s_list(out, &prod[i], count, false, listed);
        fputc('}', out);
    }
    fprintf(out, "]}\n");
    if (out != stdout)
        fclose(out);
    for (int i = 0; i < producers; i++)
        free(prod[i].seen);
    close(fd);
    return 0;
}

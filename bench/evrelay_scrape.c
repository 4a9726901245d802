/*  evrelay_scrape.c - scrape an HTTP URL at a fixed rate, as Prometheus
    does, and report how the scrapes went.

    evrelay-scrape [--rate HZ] [--seconds S] URL

    GETs URL every 1/HZ seconds (default 10 Hz) on one kept-alive
    connection until S seconds passed (default: until SIGINT/SIGTERM).
    Then prints the outcome and a last machine-readable line:

      SCRAPE ok=N errors=N refused=N bytes=N p50_ms=X p99_ms=X max_ms=X

    ok: 200 answers; errors: other statuses and transfer failures;
    refused: connection refused (the server is not up yet, or gone);
    bytes: size of the last good answer; latencies of the good ones.
    scripts/bench-scrape.sh runs it next to evrelay-bench.
*/
#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  A scrape gives up after this long, ms (Prometheus' default timeout).
#define S_TIMEOUT_MS 10000

static volatile sig_atomic_t s_interrupted = 0;

//  SIGINT/SIGTERM: finish the current scrape, then report.
static void s_on_signal(int sig)
{
    s_interrupted = 1;
}

//  Microseconds on the monotonic clock.
static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  Sleep until a monotonic time, us (returns early on a signal).
static void s_sleep_until(int64_t when_us)
{
    struct timespec ts = {.tv_sec = when_us / 1000000,
                          .tv_nsec = (when_us % 1000000) * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

//  libcurl write callback: count the body, keep nothing.
static size_t s_on_body(char *data, size_t size, size_t n, void *arg)
{
    *(size_t *)arg += size * n;
    return size * n;
}

//  qsort comparison of doubles.
static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

//  The q-quantile of n sorted values (0 when there are none).
static double s_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

//  Print the usage text.
static void s_usage(FILE *stream)
{
    fprintf(stream, "usage: evrelay-scrape [--rate HZ] [--seconds S] URL\n"
                    "  --rate HZ     scrapes per second (default 10)\n"
                    "  --seconds S   stop after S seconds (default: at "
                    "SIGINT/SIGTERM)\n");
}

//  Entry point: scrape until the time is up or a signal comes, report.
int main(int argc, char *argv[])
{
    double rate = 10, seconds = 0;
    static const struct option longopts[] = {
        {"rate", required_argument, 0, 'r'},
        {"seconds", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
            case 'r':
                rate = strtod(optarg, NULL);
                break;
            case 's':
                seconds = strtod(optarg, NULL);
                break;
            case 'h':
                s_usage(stdout);
                return 0;
            default:
                s_usage(stderr);
                return 2;
        }
    }
    if (optind + 1 != argc || rate <= 0 || rate > 10000 || seconds < 0) {
        s_usage(stderr);
        return 2;
    }
    const char *url = argv[optind];
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    CURL *curl = curl_easy_init();
    if (!curl) {
        curl_global_cleanup();
        return 1;
    }
    size_t body = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)S_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

    size_t ok = 0, errors = 0, refused = 0, last_bytes = 0, cap = 1024;
    double *latency_ms = malloc(cap * sizeof *latency_ms);
    int64_t period_us = (int64_t)(1e6 / rate);
    int64_t start = s_mono_us(), next = start;
    int64_t stop = seconds > 0 ? start + (int64_t)(seconds * 1e6) : INT64_MAX;
    while (!s_interrupted && latency_ms && next < stop) {
        s_sleep_until(next);
        if (s_interrupted)
            break;
        next += period_us;
        body = 0;
        int64_t t0 = s_mono_us();
        CURLcode rc = curl_easy_perform(curl);
        double ms = (double)(s_mono_us() - t0) / 1000.0;
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_COULDNT_CONNECT)
            refused++;
        else if (rc != CURLE_OK || status != 200)
            errors++;
        else {
            if (ok == cap) {
                double *grown = realloc(latency_ms, 2 * cap * sizeof *grown);
                if (!grown)
                    break;
                latency_ms = grown;
                cap *= 2;
            }
            latency_ms[ok++] = ms;
            last_bytes = body;
        }
        if (s_mono_us() > next) //  a slow scrape: skip the missed ticks
            next = s_mono_us();
    }
    if (latency_ms)
        qsort(latency_ms, ok, sizeof *latency_ms, s_cmp_double);
    double elapsed = (double)(s_mono_us() - start) / 1e6;
    printf("evrelay-scrape: %s for %.1f s at %.1f/s: %zu ok, %zu errors, "
           "%zu refused\n",
           url, elapsed, rate, ok, errors, refused);
    printf("SCRAPE ok=%zu errors=%zu refused=%zu bytes=%zu p50_ms=%.2f "
           "p99_ms=%.2f max_ms=%.2f\n",
           ok, errors, refused, last_bytes, s_quantile(latency_ms, ok, 0.50),
           s_quantile(latency_ms, ok, 0.99), ok ? latency_ms[ok - 1] : 0.0);
    free(latency_ms);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return 0;
}

/*  test_metrics.c - unit tests of evr_metrics, stats JSON to Prometheus
    text.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evr_metrics.h"
#include "evr_sockspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Render text (a NUL-terminated JSON document); fail on NULL.
static char *s_render(const char *json)
{
    size_t len = 0;
    char *text = evr_metrics_render(json, strlen(json), &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

//  Fail unless haystack holds needle.
#define HAS(haystack, needle)                                                  \
    do {                                                                       \
        if (!strstr((haystack), (needle)))                                     \
            fail_msg("missing %s\n--- in ---\n%s", (needle), (haystack));      \
    } while (0)

//  Fail if haystack holds needle.
#define HASNT(haystack, needle)                                                \
    do {                                                                       \
        if (strstr((haystack), (needle)))                                      \
            fail_msg("unexpected %s\n--- in ---\n%s", (needle), (haystack));   \
    } while (0)

//  Stats of one udp target with a histogram of 3 buckets.
static const char *s_stats =
    "{\"uptime_s\":12,"
    "\"ingest\":{\"received\":5,\"duplicates\":1,\"new_counter\":7},"
    "\"control\":{\"requests\":3,\"expired\":2},"
    "\"table\":{\"subscriptions\":4,\"events\":24},"
    "\"cluster\":{\"ready\":1,\"records\":9,\"deltas_in\":6,"
    "\"store_log_frames\":4,\"peers\":[{\"node\":\"relay-b:7960\","
    "\"alive\":1,\"deltas_in\":5,\"snapshots_pulled\":2,\"gaps\":1,"
    "\"last_heartbeat_ms\":250},{\"node\":\"c\\\"q\",\"alive\":0,"
    "\"deltas_in\":1,\"snapshots_pulled\":0,\"gaps\":0,"
    "\"last_heartbeat_ms\":-1}]},"
    "\"unknown_section\":{\"peers\":3},"
    "\"targets\":[{\"socket\":\"udp:127.0.0.1:9000\",\"transport\":\"udp\","
    "\"subscriptions\":2,\"delivered\":10,\"failed\":1,\"dropped\":0,"
    "\"queued\":3,\"latency_p50_us\":100,\"latency_p99_us\":250,"
    "\"latency_buckets_us\":{\"le\":[100,250,1500000],"
    "\"counts\":[4,3,2,1],\"sum\":2500750}}]}";

static void test_not_an_object(void **state)
{
    assert_null(evr_metrics_render("", 0, NULL));
    assert_null(evr_metrics_render("[1,2]", 5, NULL));
    assert_null(evr_metrics_render("\"OK\"", 4, NULL));
    assert_null(evr_metrics_render("{\"a\":", 5, NULL));
}

static void test_empty_object(void **state)
{
    char *text = s_render("{}");
    assert_string_equal(text, "");
    free(text);
}

static void test_relay_counters(void **state)
{
    char *text = s_render(s_stats);
    HAS(text, "# HELP evrelay_uptime_seconds Seconds since the relay "
              "started.\n# TYPE evrelay_uptime_seconds gauge\n"
              "evrelay_uptime_seconds 12\n");
    HAS(text, "# TYPE evrelay_ingest_received_total counter\n"
              "evrelay_ingest_received_total 5\n");
    HAS(text, "# HELP evrelay_ingest_duplicates_total Events dropped as "
              "already seen (de-duplication window).\n");
    HAS(text, "evrelay_ingest_duplicates_total 1\n");
    //  an unknown key of a known section: generic help
    HAS(text, "# HELP evrelay_ingest_new_counter_total evrelay ingest value "
              "new_counter.\n# TYPE evrelay_ingest_new_counter_total counter\n"
              "evrelay_ingest_new_counter_total 7\n");
    HAS(text, "evrelay_control_requests_total 3\n");
    HAS(text, "evrelay_control_expired_total 2\n");
    HAS(text, "# TYPE evrelay_table_subscriptions gauge\n"
              "evrelay_table_subscriptions 4\n");
    HAS(text, "evrelay_table_events 24\n");
    //  no type known for it yet
    HASNT(text, "unknown_section");
    free(text);
}

//  The policy section: labelled refusal counters and the 401 counter.
static void test_policy(void **state)
{
    char *text =
        s_render("{\"policy\":{\"policy_denied\":{\"subscribe\":2,\"raise\":0},"
                 "\"allowlist_denied\":{\"cidrs\":3,\"dirs\":1},"
                 "\"http_unauthorized\":4}}");
    HAS(text, "# HELP evrelay_policy_denied_total Control requests refused "
              "by [policy], by action.\n"
              "# TYPE evrelay_policy_denied_total counter\n"
              "evrelay_policy_denied_total{action=\"subscribe\"} 2\n"
              "evrelay_policy_denied_total{action=\"raise\"} 0\n");
    HAS(text, "# TYPE evrelay_allowlist_denied_total counter\n"
              "evrelay_allowlist_denied_total{rule=\"allow.cidrs\"} 3\n"
              "evrelay_allowlist_denied_total{rule=\"allow.dirs\"} 1\n");
    HAS(text, "# TYPE evrelay_http_unauthorized_total counter\n"
              "evrelay_http_unauthorized_total 4\n");
    free(text);
    //  parts missing: nothing for them
    text = s_render("{\"policy\":{\"http_unauthorized\":\"x\"}}");
    HASNT(text, "evrelay_policy");
    HASNT(text, "evrelay_http_unauthorized");
    free(text);
}

static void test_cluster(void **state)
{
    char *text = s_render(s_stats);
    //  gauges and counters of one section
    HAS(text, "# TYPE evrelay_cluster_ready gauge\nevrelay_cluster_ready 1\n");
    HAS(text, "# TYPE evrelay_cluster_records gauge\n"
              "evrelay_cluster_records 9\n");
    HAS(text, "# TYPE evrelay_cluster_deltas_in_total counter\n"
              "evrelay_cluster_deltas_in_total 6\n");
    HAS(text, "# TYPE evrelay_cluster_store_log_frames gauge\n");
    HASNT(text, "evrelay_cluster_peers");
    //  per peer, labelled by node id (escaped); "never" has no sample
    HAS(text, "# TYPE evrelay_cluster_peer_alive gauge\n"
              "evrelay_cluster_peer_alive{peer=\"relay-b:7960\"} 1\n"
              "evrelay_cluster_peer_alive{peer=\"c\\\"q\"} 0\n");
    HAS(text, "evrelay_cluster_peer_deltas_in_total{peer=\"relay-b:7960\"} "
              "5\n");
    HAS(text, "evrelay_cluster_peer_snapshots_pulled_total{peer=\"relay-b:"
              "7960\"} 2\n");
    HAS(text, "evrelay_cluster_peer_gaps_total{peer=\"relay-b:7960\"} 1\n");
    HAS(text, "evrelay_cluster_peer_last_heartbeat_seconds{peer=\"relay-b:"
              "7960\"} 0.250\n");
    HASNT(text, "evrelay_cluster_peer_last_heartbeat_seconds{peer=\"c");
    free(text);
}

static void test_target_values(void **state)
{
    char *text = s_render(s_stats);
    const char *labels = "{target=\"udp:127.0.0.1:9000\",transport=\"udp\"}";
    char line[256];
    snprintf(line, sizeof line,
             "# TYPE evrelay_target_delivered_total counter\n"
             "evrelay_target_delivered_total%s 10\n",
             labels);
    HAS(text, line);
    snprintf(line, sizeof line, "evrelay_target_failed_total%s 1\n", labels);
    HAS(text, line);
    snprintf(line, sizeof line, "evrelay_target_dropped_total%s 0\n", labels);
    HAS(text, line);
    snprintf(line, sizeof line,
             "# TYPE evrelay_target_queued gauge\n"
             "evrelay_target_queued%s 3\n",
             labels);
    HAS(text, line);
    snprintf(line, sizeof line, "evrelay_target_subscriptions%s 2\n", labels);
    HAS(text, line);
    //  percentiles are for humans; the histogram is exported instead
    HASNT(text, "p50");
    free(text);
}

static void test_histogram(void **state)
{
    char *text = s_render(s_stats);
    //  cumulative, bounds in seconds, +Inf = _count, _sum in seconds
    HAS(text,
        "# HELP evrelay_delivery_latency_seconds Time from the producer's "
        "raise to delivery.\n"
        "# TYPE evrelay_delivery_latency_seconds histogram\n"
        "evrelay_delivery_latency_seconds_bucket{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\",le=\"0.0001\"} 4\n"
        "evrelay_delivery_latency_seconds_bucket{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\",le=\"0.00025\"} 7\n"
        "evrelay_delivery_latency_seconds_bucket{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\",le=\"1.5\"} 9\n"
        "evrelay_delivery_latency_seconds_bucket{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\",le=\"+Inf\"} 10\n"
        "evrelay_delivery_latency_seconds_sum{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\"} 2.50075\n"
        "evrelay_delivery_latency_seconds_count{target=\"udp:127.0.0.1:9000\","
        "transport=\"udp\"} 10\n");
    free(text);
}

static void test_histogram_bounds(void **state)
{
    //  whole seconds, microseconds, zero sum
    char *text = s_render(
        "{\"targets\":[{\"socket\":\"s\",\"transport\":\"t\","
        "\"latency_buckets_us\":{\"le\":[1,10000000],\"counts\":[0,0,0],"
        "\"sum\":0}}]}");
    HAS(text, "le=\"0.000001\"} 0\n");
    HAS(text, "le=\"10\"} 0\n");
    HAS(text, "_sum{target=\"s\",transport=\"t\"} 0\n");
    free(text);
}

static void test_bad_histogram_skipped(void **state)
{
    //  counts must be one longer than le
    char *text = s_render(
        "{\"targets\":[{\"socket\":\"s\",\"transport\":\"t\",\"delivered\":1,"
        "\"latency_buckets_us\":{\"le\":[1,2],\"counts\":[0,0],\"sum\":0}},"
        "{\"socket\":\"s2\",\"transport\":\"t\","
        "\"latency_buckets_us\":{\"le\":[1],\"counts\":[0,\"x\"],\"sum\":0}}"
        "]}");
    HAS(text, "evrelay_target_delivered_total{target=\"s\",transport=\"t\"} 1");
    HASNT(text, "_bucket");
    HASNT(text, "_count");
    free(text);
}

static void test_label_escaping(void **state)
{
    char *text = s_render("{\"targets\":[{\"socket\":\"a\\\\b\\\"c\\nd\","
                          "\"transport\":\"x\",\"queued\":1}]}");
    HAS(text, "evrelay_target_queued{target=\"a\\\\b\\\"c\\nd\",transport="
              "\"x\"} 1\n");
    free(text);
}

static void test_virtual_children(void **state)
{
    char *text = s_render(
        "{\"targets\":[{\"socket\":\"virtual:PARALLEL udp:1.2.3.4:5 "
        "udp:1.2.3.4:6\",\"transport\":\"virtual\",\"subscriptions\":1,"
        "\"delivered\":2,\"children\":["
        "{\"socket\":\"udp:1.2.3.4:5\",\"transport\":\"udp\",\"delivered\":2},"
        "{\"socket\":\"udp:1.2.3.4:6\",\"transport\":\"udp\",\"delivered\":0}"
        "]},{\"socket\":\"udp:1.2.3.4:5\",\"transport\":\"udp\","
        "\"delivered\":9}]}");
    HAS(text, "evrelay_target_delivered_total{target=\"virtual:PARALLEL "
              "udp:1.2.3.4:5 udp:1.2.3.4:6\",transport=\"virtual\"} 2\n"
              "evrelay_target_delivered_total{target=\"udp:1.2.3.4:5\","
              "transport=\"udp\",parent=\"virtual:PARALLEL udp:1.2.3.4:5 "
              "udp:1.2.3.4:6\"} 2\n"
              "evrelay_target_delivered_total{target=\"udp:1.2.3.4:6\","
              "transport=\"udp\",parent=\"virtual:PARALLEL udp:1.2.3.4:5 "
              "udp:1.2.3.4:6\"} 0\n"
              "evrelay_target_delivered_total{target=\"udp:1.2.3.4:5\","
              "transport=\"udp\"} 9\n");
    //  children have no subscriptions of their own
    HASNT(text, "evrelay_target_subscriptions{target=\"udp:1.2.3.4:6\"");
    free(text);
}

static void test_families_once(void **state)
{
    //  every family's HELP and TYPE appear once, before its samples,
    //  however many targets there are
    char *text = s_render(
        "{\"targets\":[{\"socket\":\"a\",\"transport\":\"udp\",\"queued\":1},"
        "{\"socket\":\"b\",\"transport\":\"udp\",\"queued\":2}]}");
    const char *first = strstr(text, "# TYPE evrelay_target_queued gauge\n");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE evrelay_target_queued"));
    HAS(first,
        "gauge\nevrelay_target_queued{target=\"a\",transport=\"udp\"} 1\n"
        "evrelay_target_queued{target=\"b\",transport=\"udp\"} 2\n");
    free(text);
}

static void test_rabbitmq_password_hidden(void **state)
{
    //  the target label is the canonical socket, which has no password
    char why[256];
    evr_sockspec_t *spec = evr_sockspec_parse(
        "rabbitmq:alice:s3cret@127.0.0.1:5672/events", why, sizeof why);
    assert_non_null(spec);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"targets\":[{\"socket\":\"%s\",\"transport\":\"rabbitmq\","
             "\"delivered\":0}]}",
             evr_sockspec_canonical(spec));
    char *text = s_render(json);
    HAS(text, "target=\"rabbitmq:");
    HAS(text, "alice");
    HASNT(text, "s3cret");
    free(text);
    evr_sockspec_destroy(&spec);
}

static void test_names_sanitized(void **state)
{
    char *text = s_render("{\"ingest\":{\"a-b.c\":1}}");
    HAS(text, "\nevrelay_ingest_a_b_c_total 1\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_relay_counters),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_cluster),
        cmocka_unit_test(test_target_values),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_bounds),
        cmocka_unit_test(test_bad_histogram_skipped),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_virtual_children),
        cmocka_unit_test(test_families_once),
        cmocka_unit_test(test_rabbitmq_password_hidden),
        cmocka_unit_test(test_names_sanitized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

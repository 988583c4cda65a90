/*
 * Tests for the metrics registry (common/metrics.h): exact rendered text, escaping, child
 * identity, the series limit, name validation, concurrent updates, summary quantiles against
 * mg_hist_percentile, and the process metrics.
 */
#include "common/error.h"
#include "common/hist.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/metrics.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void quiet_logs(void)
{
    /* Refusals log warnings; keep test output readable. */
    mg_log_set_level(MG_LOG_ERROR);
}

TestSuite(metrics, .timeout = 10, .init = quiet_logs);

static char *render(mg_metrics *reg)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mg_metrics_render(reg, &text, &len), MG_OK);
    cr_assert_not_null(text);
    cr_assert_eq(len, strlen(text));
    return text;
}

static double answer(void *arg)
{
    return *(const double *)arg;
}

Test(metrics, render_exact_small_registry)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);

    const char *req_labels[] = { "method", "code" };
    mg_metric_family *req =
        mg_metrics_counter_family(reg, "mg_requests_total", "Requests handled.", 2, req_labels);
    cr_assert_not_null(req);
    mg_counter *get200 = mg_metrics_counter(req, (const char *const[]){ "get", "200" });
    mg_counter *put500 = mg_metrics_counter(req, (const char *const[]){ "put", "500" });
    mg_counter_add(get200, 5);
    mg_counter_inc(put500);

    mg_gauge *temp =
        mg_metrics_unlabelled_gauge(reg, "mg_temperature_celsius", "Current temperature.");
    mg_gauge_set(temp, -3.5);

    const char *op[] = { "op" };
    mg_metric_family *lat =
        mg_metrics_histogram_family(reg, "mg_latency_ms", "Read latency.", 1, op, 0.001);
    mg_histogram *read = mg_metrics_histogram(lat, (const char *const[]){ "read" });
    mg_histogram *write = mg_metrics_histogram(lat, (const char *const[]){ "write" });
    cr_assert_not_null(write);
    mg_histogram_observe(read, 1000); /* bucket [992, 1007] us */
    mg_histogram_observe(read, 2000); /* bucket [1984, 2015] us, the max */

    double depth = 42;
    cr_assert_eq(mg_metrics_gauge_fn(reg, "mg_queue_depth", NULL, answer, &depth), MG_OK);
    cr_assert_not_null(mg_metrics_unlabelled_counter(reg, "mg_bytes_total", "Bytes."));

    const char *expect = "# HELP mg_requests_total Requests handled.\n"
                         "# TYPE mg_requests_total counter\n"
                         "mg_requests_total{method=\"get\",code=\"200\"} 5\n"
                         "mg_requests_total{method=\"put\",code=\"500\"} 1\n"
                         "# HELP mg_temperature_celsius Current temperature.\n"
                         "# TYPE mg_temperature_celsius gauge\n"
                         "mg_temperature_celsius -3.5\n"
                         "# HELP mg_latency_ms Read latency.\n"
                         "# TYPE mg_latency_ms summary\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.5\"} 1.007\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.75\"} 2\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.95\"} 2\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.99\"} 2\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.999\"} 2\n"
                         "mg_latency_ms{op=\"read\",quantile=\"0.9999\"} 2\n"
                         "mg_latency_ms{op=\"read\",quantile=\"1.0\"} 2\n"
                         "mg_latency_ms_sum{op=\"read\"} 3\n"
                         "mg_latency_ms_count{op=\"read\"} 2\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.5\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.75\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.95\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.99\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.999\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"0.9999\"} NaN\n"
                         "mg_latency_ms{op=\"write\",quantile=\"1.0\"} NaN\n"
                         "mg_latency_ms_sum{op=\"write\"} 0\n"
                         "mg_latency_ms_count{op=\"write\"} 0\n"
                         "# TYPE mg_queue_depth gauge\n"
                         "mg_queue_depth 42\n"
                         "# HELP mg_bytes_total Bytes.\n"
                         "# TYPE mg_bytes_total counter\n"
                         "mg_bytes_total 0\n";
    char *text = render(reg);
    cr_assert_str_eq(text, expect);
    free(text);

    /* Values are read at render time. */
    depth = 0.25;
    mg_gauge_add(temp, 1.0);
    text = render(reg);
    cr_assert_not_null(strstr(text, "\nmg_queue_depth 0.25\n"));
    cr_assert_not_null(strstr(text, "\nmg_temperature_celsius -2.5\n"));
    free(text);
    cr_assert_eq(mg_metrics_series_count(reg), 7);
    mg_metrics_destroy(reg);
}

Test(metrics, empty_registry_renders_empty_string)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    char *text = NULL;
    cr_assert_eq(mg_metrics_render(reg, &text, NULL), MG_OK);
    cr_assert_str_eq(text, "");
    free(text);
    mg_metrics_destroy(reg);
    mg_metrics_destroy(NULL);
}

Test(metrics, gauge_values_and_special_floats)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *k[] = { "k" };
    mg_metric_family *f = mg_metrics_gauge_family(reg, "g", "G.", 1, k);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "a" }), 0.1);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "b" }), 1e20);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "c" }), 1.0 / 0.0);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "d" }), -1.0 / 0.0);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "e" }), 0.0 / 0.0);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "f" }), 1.0 / 3.0);
    mg_gauge_set(mg_metrics_gauge(f, (const char *const[]){ "g" }), 123456789);
    char *text = render(reg);
    cr_assert_str_eq(text, "# HELP g G.\n"
                           "# TYPE g gauge\n"
                           "g{k=\"a\"} 0.1\n"
                           "g{k=\"b\"} 1e+20\n"
                           "g{k=\"c\"} +Inf\n"
                           "g{k=\"d\"} -Inf\n"
                           "g{k=\"e\"} NaN\n"
                           "g{k=\"f\"} 0.33333333333333331\n"
                           "g{k=\"g\"} 123456789\n");
    free(text);
    mg_metrics_destroy(reg);
}

Test(metrics, escaping)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *names[] = { "path" };
    mg_metric_family *f = mg_metrics_counter_family(
        reg, "esc_total", "Back\\slash, \"quotes\"\nand newline.", 1, names);
    mg_counter_add(mg_metrics_counter(f, (const char *const[]){ "a\"b\\c\nd" }), 7);
    mg_counter_add(mg_metrics_counter(f, (const char *const[]){ "" }), 1);
    mg_counter_add(mg_metrics_counter(f, (const char *const[]){ "caf\xc3\xa9" }), 2);
    char *text = render(reg);
    cr_assert_str_eq(text, "# HELP esc_total Back\\\\slash, \"quotes\"\\nand newline.\n"
                           "# TYPE esc_total counter\n"
                           "esc_total{path=\"a\\\"b\\\\c\\nd\"} 7\n"
                           "esc_total{path=\"\"} 1\n"
                           "esc_total{path=\"caf\xc3\xa9\"} 2\n");
    free(text);
    mg_metrics_destroy(reg);
}

Test(metrics, same_values_same_child)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *names[] = { "topic", "partition" };
    mg_metric_family *f = mg_metrics_counter_family(reg, "msgs_total", "M.", 2, names);
    cr_assert_not_null(f);
    char topic[] = "persistent://public/default/t";
    mg_counter *a = mg_metrics_counter(f, (const char *const[]){ topic, "0" });
    /* The values are copied: a different buffer with the same text finds the same child. */
    char again[sizeof(topic)];
    memcpy(again, topic, sizeof(topic));
    mg_counter *b = mg_metrics_counter(f, (const char *const[]){ again, "0" });
    mg_counter *c = mg_metrics_counter(f, (const char *const[]){ topic, "1" });
    /* Joined values must not collide: ("ab", "c") vs ("a", "bc"). */
    mg_counter *d = mg_metrics_counter(f, (const char *const[]){ "ab", "c" });
    mg_counter *e = mg_metrics_counter(f, (const char *const[]){ "a", "bc" });
    cr_assert_not_null(a);
    cr_assert_eq(a, b);
    cr_assert_neq(a, c);
    cr_assert_neq(d, e);
    mg_counter_inc(a);
    mg_counter_inc(b);
    cr_assert_eq(mg_counter_value(a), 2);
    cr_assert_eq(mg_counter_value(c), 0);
    cr_assert_eq(mg_metrics_series_count(reg), 4);

    /* Many children: the table grows and every lookup still finds its own. */
    mg_counter *kids[1000];
    char buf[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        kids[i] = mg_metrics_counter(f, (const char *const[]){ "many", buf });
        cr_assert_not_null(kids[i]);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        cr_assert_eq(mg_metrics_counter(f, (const char *const[]){ "many", buf }), kids[i]);
    }
    cr_assert_eq(mg_metrics_series_count(reg), 1004);

    /* Same family registered again: same pointer. Different type or labels: NULL. */
    cr_assert_eq(mg_metrics_counter_family(reg, "msgs_total", "Other help.", 2, names), f);
    cr_assert_null(mg_metrics_gauge_family(reg, "msgs_total", "M.", 2, names));
    cr_assert_null(mg_metrics_histogram_family(reg, "msgs_total", "M.", 2, names, 1.0));
    cr_assert_null(mg_metrics_counter_family(reg, "msgs_total", "M.", 1, names));
    const char *other[] = { "topic", "shard" };
    cr_assert_null(mg_metrics_counter_family(reg, "msgs_total", "M.", 2, other));
    /* A child of the wrong type is refused. */
    cr_assert_null(mg_metrics_gauge(f, (const char *const[]){ topic, "0" }));
    cr_assert_null(mg_metrics_histogram(f, (const char *const[]){ topic, "0" }));
    cr_assert_null(mg_metrics_counter(NULL, NULL));

    /* Histogram families also match on scale. */
    mg_metric_family *h = mg_metrics_histogram_family(reg, "lat_ms", "L.", 0, NULL, 0.001);
    cr_assert_not_null(h);
    cr_assert_eq(mg_metrics_histogram_family(reg, "lat_ms", "L.", 0, NULL, 0.001), h);
    cr_assert_null(mg_metrics_histogram_family(reg, "lat_ms", "L.", 0, NULL, 1.0));
    cr_assert_eq(mg_metrics_unlabelled_histogram(reg, "lat_ms", "L.", 0.001),
                 mg_metrics_histogram(h, NULL));

    /* Callback metrics cannot share a name. */
    double v = 1;
    cr_assert_eq(mg_metrics_gauge_fn(reg, "msgs_total", "x", answer, &v), MG_EEXIST);
    cr_assert_eq(mg_metrics_gauge_fn(reg, "fn_gauge", "x", answer, &v), MG_OK);
    cr_assert_eq(mg_metrics_counter_fn(reg, "fn_gauge", "x", answer, &v), MG_EEXIST);
    cr_assert_null(mg_metrics_counter_family(reg, "fn_gauge", "x", 0, NULL));
    mg_metrics_destroy(reg);
}

Test(metrics, series_limit)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    cr_assert_eq(mg_metrics_set_series_max(reg, 0), MG_EINVAL);
    cr_assert_eq(mg_metrics_set_series_max(reg, MG_METRICS_SERIES_MAX + 1), MG_EINVAL);
    cr_assert_eq(mg_metrics_set_series_max(reg, 10), MG_OK);
    const char *names[] = { "id" };
    mg_metric_family *f = mg_metrics_counter_family(reg, "limited_total", "L.", 1, names);
    double v = 1;
    cr_assert_eq(mg_metrics_gauge_fn(reg, "fn_one", NULL, answer, &v), MG_OK); /* series 1 */
    char buf[16];
    mg_counter *first = NULL;
    for (int i = 0; i < 9; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        mg_counter *c = mg_metrics_counter(f, (const char *const[]){ buf });
        cr_assert_not_null(c, "series %d", i);
        if (i == 0)
            first = c;
    }
    cr_assert_eq(mg_metrics_series_count(reg), 10);
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ "9" }));
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ "10" }));
    cr_assert_eq(mg_metrics_gauge_fn(reg, "fn_two", NULL, answer, &v), MG_ELIMIT);
    cr_assert_null(mg_metrics_unlabelled_gauge(reg, "another", "A."));
    /* Existing series are still found. */
    cr_assert_eq(mg_metrics_counter(f, (const char *const[]){ "0" }), first);
    cr_assert_eq(mg_metrics_series_count(reg), 10);
    /* Dropped series cost their users nothing: updates on NULL are ignored. */
    mg_counter_inc(NULL);
    mg_counter_add(NULL, 5);
    mg_gauge_set(NULL, 1.0);
    mg_gauge_add(NULL, 1.0);
    mg_histogram_observe(NULL, 5);
    cr_assert_eq(mg_counter_value(NULL), 0);
    cr_assert_float_eq(mg_gauge_value(NULL), 0.0, 0.0);
    /* Raising the limit lets new series in again. */
    cr_assert_eq(mg_metrics_set_series_max(reg, 11), MG_OK);
    cr_assert_not_null(mg_metrics_counter(f, (const char *const[]){ "9" }));
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ "10" }));
    mg_metrics_destroy(reg);
}

Test(metrics, default_series_limit)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *names[] = { "id" };
    mg_metric_family *f = mg_metrics_counter_family(reg, "many_total", "M.", 1, names);
    char buf[16];
    for (int i = 0; i < MG_METRICS_SERIES_MAX; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        cr_assert_not_null(mg_metrics_counter(f, (const char *const[]){ buf }), "series %d", i);
    }
    cr_assert_eq(mg_metrics_series_count(reg), MG_METRICS_SERIES_MAX);
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ "one more" }));
    cr_assert_not_null(mg_metrics_counter(f, (const char *const[]){ "123" }));
    mg_metrics_destroy(reg);
}

Test(metrics, invalid_names_refused)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *bad_names[] = { "", "1abc", "a-b", "with space", "é", "a.b", "a{b}" };
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        cr_assert_null(mg_metrics_counter_family(reg, bad_names[i], "x", 0, NULL), "%s",
                       bad_names[i]);
        cr_assert_null(mg_metrics_unlabelled_gauge(reg, bad_names[i], "x"));
        cr_assert_eq(mg_metrics_gauge_fn(reg, bad_names[i], "x", answer, NULL), MG_EINVAL);
    }
    cr_assert_null(mg_metrics_counter_family(reg, NULL, "x", 0, NULL));
    /* Valid names, including colons, underscores and digits after the first character. */
    cr_assert_not_null(mg_metrics_counter_family(reg, "a:b_c9", "x", 0, NULL));
    cr_assert_not_null(mg_metrics_counter_family(reg, "_x", "x", 0, NULL));
    cr_assert_not_null(mg_metrics_counter_family(reg, ":y", "x", 0, NULL));

    /* Name length: exactly the maximum is fine, one more is not. */
    char name[MG_METRICS_NAME_BYTES_MAX + 2];
    memset(name, 'n', MG_METRICS_NAME_BYTES_MAX);
    name[MG_METRICS_NAME_BYTES_MAX] = '\0';
    cr_assert_not_null(mg_metrics_counter_family(reg, name, "x", 0, NULL));
    name[MG_METRICS_NAME_BYTES_MAX] = 'n';
    name[MG_METRICS_NAME_BYTES_MAX + 1] = '\0';
    cr_assert_null(mg_metrics_counter_family(reg, name, "x", 0, NULL));

    /* Label names: no colon, no leading digit, no "__" prefix, no duplicates, not too many. */
    const char *bad_labels[] = { "a:b", "1a", "__reserved", "", "a-b" };
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
        cr_assert_null(mg_metrics_counter_family(reg, "lbl_total", "x", 1, &bad_labels[i]), "%s",
                       bad_labels[i]);
    const char *dup[] = { "a", "a" };
    cr_assert_null(mg_metrics_counter_family(reg, "lbl_total", "x", 2, dup));
    const char *nine[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
    cr_assert_null(mg_metrics_counter_family(reg, "lbl_total", "x", 9, nine));
    cr_assert_not_null(mg_metrics_counter_family(reg, "lbl8_total", "x", 8, nine));
    /* "quantile" is taken by the summary rendering of histograms, not by counters. */
    const char *q[] = { "quantile" };
    cr_assert_null(mg_metrics_histogram_family(reg, "q_ms", "x", 1, q, 1.0));
    cr_assert_not_null(mg_metrics_counter_family(reg, "q_total", "x", 1, q));
    /* Histogram scale must be positive and finite. */
    cr_assert_null(mg_metrics_histogram_family(reg, "s_ms", "x", 0, NULL, 0.0));
    cr_assert_null(mg_metrics_histogram_family(reg, "s_ms", "x", 0, NULL, -1.0));
    cr_assert_null(mg_metrics_histogram_family(reg, "s_ms", "x", 0, NULL, 1.0 / 0.0));
    /* Help too long. */
    char *help = malloc(MG_METRICS_HELP_BYTES_MAX + 2);
    memset(help, 'h', MG_METRICS_HELP_BYTES_MAX + 1);
    help[MG_METRICS_HELP_BYTES_MAX + 1] = '\0';
    cr_assert_null(mg_metrics_counter_family(reg, "long_help_total", help, 0, NULL));
    free(help);

    /* Label values: NULL, too long, invalid UTF-8. */
    const char *names[] = { "v" };
    mg_metric_family *f = mg_metrics_counter_family(reg, "values_total", "x", 1, names);
    cr_assert_not_null(f);
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ NULL }));
    char *value = malloc(MG_METRICS_LABEL_VALUE_BYTES_MAX + 2);
    memset(value, 'v', MG_METRICS_LABEL_VALUE_BYTES_MAX + 1);
    value[MG_METRICS_LABEL_VALUE_BYTES_MAX + 1] = '\0';
    cr_assert_null(mg_metrics_counter(f, (const char *const[]){ value }));
    value[MG_METRICS_LABEL_VALUE_BYTES_MAX] = '\0';
    cr_assert_not_null(mg_metrics_counter(f, (const char *const[]){ value }));
    free(value);
    const char *bad_utf8[] = { "\xff",         "\xc3",     "\xc0\xaf",
                               "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80" };
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
        cr_assert_null(mg_metrics_counter(f, &bad_utf8[i]), "value %zu", i);
    cr_assert_not_null(mg_metrics_counter(f, (const char *const[]){ "\xf0\x9f\x98\x80" }));
    mg_metrics_destroy(reg);
}

#define THREADS    4
#define PER_THREAD 100000

struct worker_args {
    mg_counter *counter;
    mg_gauge *gauge;
    mg_histogram *hist;
};

static void *update_worker(void *p)
{
    struct worker_args *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        mg_counter_inc(a->counter);
        mg_gauge_add(a->gauge, 1.0);
        mg_histogram_observe(a->hist, (uint64_t)(i % 1000));
    }
    return NULL;
}

Test(metrics, concurrent_updates_sum_exactly)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    struct worker_args a = {
        .counter = mg_metrics_unlabelled_counter(reg, "ops_total", "Ops."),
        .gauge = mg_metrics_unlabelled_gauge(reg, "level", "Level."),
        .hist = mg_metrics_unlabelled_histogram(reg, "op_us", "Op latency.", 1.0),
    };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, update_worker, &a), 0);
    /* Rendering while writers run must be safe. */
    char *text = render(reg);
    free(text);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(t[i], NULL), 0);
    cr_assert_eq(mg_counter_value(a.counter), (uint64_t)THREADS * PER_THREAD);
    cr_assert_float_eq(mg_gauge_value(a.gauge), (double)THREADS * PER_THREAD, 0.0);
    mg_hist snap;
    cr_assert_eq(mg_hist_init(&snap, MG_METRICS_HIST_PRECISION_BITS, MG_METRICS_HIST_VALUE_MAX),
                 MG_OK);
    cr_assert_eq(mg_histogram_snapshot(a.hist, &snap), MG_OK);
    cr_assert_eq(mg_hist_count(&snap), (uint64_t)THREADS * PER_THREAD);
    /* Each thread records 0..999 a hundred times: sum 100 * 499500 per thread. */
    cr_assert_eq(mg_hist_sum(&snap), (uint64_t)THREADS * 100 * 499500);
    mg_hist_destroy(&snap);
    text = render(reg);
    cr_assert_not_null(strstr(text, "\nops_total 400000\n"));
    cr_assert_not_null(strstr(text, "\nlevel 400000\n"));
    cr_assert_not_null(strstr(text, "\nop_us_count 400000\n"));
    cr_assert_not_null(strstr(text, "\nop_us_sum 199800000\n"));
    free(text);
    mg_metrics_destroy(reg);
}

/* Finds the sample line starting with prefix (including the trailing space) and returns the
 * text after it. */
static const char *sample_value(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = text; *line != '\0';) {
        if (strncmp(line, prefix, n) == 0)
            return line + n;
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return NULL;
}

Test(metrics, summary_quantiles_match_hist_percentile)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    const char *names[] = { "unit" };
    mg_metric_family *us = mg_metrics_histogram_family(reg, "lat_us", "L.", 1, names, 1.0);
    mg_metric_family *ms = mg_metrics_histogram_family(reg, "lat_ms", "L.", 1, names, 0.001);
    mg_histogram *hu = mg_metrics_histogram(us, (const char *const[]){ "x" });
    mg_histogram *hm = mg_metrics_histogram(ms, (const char *const[]){ "x" });
    mg_hist ref;
    cr_assert_eq(mg_hist_init(&ref, MG_METRICS_HIST_PRECISION_BITS, MG_METRICS_HIST_VALUE_MAX),
                 MG_OK);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = (x >> 40) >> (x % 24); /* 0 .. 2^24, spread over magnitudes */
        mg_histogram_observe(hu, v);
        mg_histogram_observe(hm, v);
        mg_hist_record(&ref, v);
    }
    char *text = render(reg);
    static const char *const qs[] = { "0.5", "0.75", "0.95", "0.99", "0.999", "0.9999", "1.0" };
    static const double ps[] = { 50, 75, 95, 99, 99.9, 99.99, 100 };
    char prefix[128];
    for (size_t i = 0; i < 7; i++) {
        uint64_t expect = mg_hist_percentile(&ref, ps[i]);
        snprintf(prefix, sizeof(prefix), "lat_us{unit=\"x\",quantile=\"%s\"} ", qs[i]);
        const char *v = sample_value(text, prefix);
        cr_assert_not_null(v, "%s", prefix);
        cr_assert_eq(strtoull(v, NULL, 10), expect, "%s", prefix);
        snprintf(prefix, sizeof(prefix), "lat_ms{unit=\"x\",quantile=\"%s\"} ", qs[i]);
        v = sample_value(text, prefix);
        cr_assert_not_null(v, "%s", prefix);
        cr_assert_eq(strtod(v, NULL), (double)expect / 1000.0, "%s", prefix);
    }
    const char *v = sample_value(text, "lat_us_count{unit=\"x\"} ");
    cr_assert_not_null(v);
    cr_assert_eq(strtoull(v, NULL, 10), 5000);
    v = sample_value(text, "lat_us_sum{unit=\"x\"} ");
    cr_assert_not_null(v);
    cr_assert_eq(strtoull(v, NULL, 10), mg_hist_sum(&ref));
    v = sample_value(text, "lat_ms_count{unit=\"x\"} ");
    cr_assert_not_null(v);
    cr_assert_eq(strtoull(v, NULL, 10), 5000);
    free(text);
    mg_hist_destroy(&ref);
    mg_metrics_destroy(reg);
}

static double render_number(const char *text, const char *name)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s ", name);
    const char *v = sample_value(text, prefix);
    cr_assert_not_null(v, "%s missing", name);
    return strtod(v, NULL);
}

Test(metrics, process_metrics)
{
    mg_metrics *reg;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    cr_assert_eq(mg_metrics_register_process(reg), MG_OK);
    cr_assert_eq(mg_metrics_register_process(reg), MG_OK); /* again: no-op */
    cr_assert_eq(mg_metrics_series_count(reg), 6);
    int fd = open("/dev/null", O_RDONLY);
    cr_assert_geq(fd, 0);
    char *text = render(reg);
    cr_assert_not_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    cr_assert_not_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
    /* Registered once only. */
    const char *first = strstr(text, "# TYPE process_open_fds");
    cr_assert_null(strstr(first + 1, "# TYPE process_open_fds"));

    double rss = render_number(text, "process_resident_memory_bytes");
    double vsz = render_number(text, "process_virtual_memory_bytes");
    double cpu = render_number(text, "process_cpu_seconds_total");
    double fds = render_number(text, "process_open_fds");
    double max_fds = render_number(text, "process_max_fds");
    double start = render_number(text, "process_start_time_seconds");
    cr_assert_gt(rss, 0);
    cr_assert_geq(vsz, rss);
    cr_assert_geq(cpu, 0);
    cr_assert_lt(cpu, 3600);
    cr_assert_geq(fds, 1); /* at least the /dev/null opened above */
    cr_assert_geq(max_fds, fds);
    double now = (double)time(NULL);
    cr_assert_gt(start, now - 3600, "start %f now %f", start, now);
    cr_assert_leq(start, now + 2, "start %f now %f", start, now);
    free(text);
    close(fd);
    mg_metrics_destroy(reg);
}

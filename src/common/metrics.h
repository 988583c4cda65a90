/*
 * The metrics registry, rendered in the Prometheus text exposition format 0.0.4 for /metrics.
 *
 * A registry (mg_metrics) holds families in registration order. A family has a name, a help
 * text, a type and a fixed list of label names; its children (series) are created on first use
 * for each tuple of label values and live until the registry is destroyed. Families:
 *   - counter:   uint64_t, only goes up (mg_counter_add / mg_counter_inc);
 *   - gauge:     double, set or adjusted (mg_gauge_set / mg_gauge_add);
 *   - histogram: an mg_hist (common/hist.h) per child, fed with mg_histogram_observe, rendered
 *                as a Prometheus `summary` with the quantiles 0.5, 0.75, 0.95, 0.99, 0.999,
 *                0.9999 and 1.0 (the set BookKeeper's Prometheus provider exposes), `_sum` and
 *                `_count`. A per-family scale converts the recorded unit (e.g. microseconds)
 *                into the unit the name says (e.g. `_ms` with scale 0.001); counts are unscaled;
 *   - callback gauges and counters (mg_metrics_gauge_fn / mg_metrics_counter_fn) computed at
 *     scrape time, without labels.
 *
 * Names follow Prometheus: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* not starting with "__" (and not "quantile" in a histogram family), label
 * values UTF-8. Sizes are bounded by MG_METRICS_* in common/limits.h; the number of series in a
 * registry by MG_METRICS_SERIES_MAX (or a lower per-registry setting), so labels built from data
 * cannot grow it without bound.
 *
 * Threading: registration, lookup and rendering take the registry's mutex (they happen at setup
 * and at scrape time). Updates (mg_counter_*, mg_gauge_*, mg_histogram_observe) are lock-free
 * relaxed atomics and may come from any thread. Every update function accepts NULL and does
 * nothing, so a metric whose registration failed (logged) costs its user no error path.
 * Children are never freed before mg_metrics_destroy, so handles stay valid until then.
 */
#ifndef MG_COMMON_METRICS_H
#define MG_COMMON_METRICS_H

#include "common/hist.h"

#include <stddef.h>
#include <stdint.h>

typedef struct mg_metrics mg_metrics;
typedef struct mg_metric_family mg_metric_family;
typedef struct mg_counter mg_counter;
typedef struct mg_gauge mg_gauge;
typedef struct mg_histogram mg_histogram;

/* Creates an empty registry in *out (series limit MG_METRICS_SERIES_MAX). The caller owns it and
 * frees it with mg_metrics_destroy. Returns MG_OK or MG_ENOMEM (*out is then NULL). */
int mg_metrics_create(mg_metrics **out);

/* Frees the registry, its families and all children: every handle obtained from it becomes
 * invalid, so call it only after all threads that update its metrics have stopped. NULL is
 * accepted. */
void mg_metrics_destroy(mg_metrics *reg);

/* Lowers (or restores) the registry's series limit to series_max, 1..MG_METRICS_SERIES_MAX.
 * Existing series are kept even above the new limit; only new ones are refused. Any thread.
 * Returns MG_OK or MG_EINVAL. */
int mg_metrics_set_series_max(mg_metrics *reg, size_t series_max);

/* Number of series (children plus callback metrics) in the registry. Any thread. */
size_t mg_metrics_series_count(mg_metrics *reg);

/* Registers a family, or returns the existing one when a family of that name was registered
 * before with the same type and label names (and, for histograms, the same scale). The registry
 * copies name, help and label names. help may be NULL (no HELP line). label_names holds
 * label_count names (may be NULL when label_count is 0), at most MG_METRICS_LABELS_MAX.
 * Returns NULL, with a logged warning, when a name is invalid, the name is taken by a family of a
 * different type or labels, MG_METRICS_FAMILIES_MAX is reached, or memory runs out. The family
 * belongs to the registry. Any thread (takes the registry mutex). */
mg_metric_family *mg_metrics_counter_family(mg_metrics *reg, const char *name, const char *help,
                                            size_t label_count, const char *const *label_names);
mg_metric_family *mg_metrics_gauge_family(mg_metrics *reg, const char *name, const char *help,
                                          size_t label_count, const char *const *label_names);
/* As above; values are recorded as integers (e.g. microseconds) and rendered multiplied by scale
 * (> 0 and finite; 1.0 renders them as recorded, 0.001 turns microseconds into milliseconds). */
mg_metric_family *mg_metrics_histogram_family(mg_metrics *reg, const char *name, const char *help,
                                              size_t label_count, const char *const *label_names,
                                              double scale);

/* Returns the child of family fam for the given label values (label_count of them, in the order
 * of the family's label names; may be NULL for a family without labels), creating it on first
 * use: the same values always give the same child. The values are copied. The child belongs to
 * the registry and is valid until mg_metrics_destroy. Returns NULL when fam is NULL, when fam is
 * of another type, and, with a logged warning, when a value is NULL, too long
 * (MG_METRICS_LABEL_VALUE_BYTES_MAX) or not UTF-8, when the registry's series limit is reached
 * (warned once per registry), or when memory runs out. Any thread (takes the registry mutex):
 * look children up once and keep the handle rather than calling this per event. */
mg_counter *mg_metrics_counter(mg_metric_family *fam, const char *const *label_values);
mg_gauge *mg_metrics_gauge(mg_metric_family *fam, const char *const *label_values);
mg_histogram *mg_metrics_histogram(mg_metric_family *fam, const char *const *label_values);

/* Shortcuts for metrics without labels: register (or find) the family and return its only
 * child. Same ownership and errors as the two calls they combine. */
mg_counter *mg_metrics_unlabelled_counter(mg_metrics *reg, const char *name, const char *help);
mg_gauge *mg_metrics_unlabelled_gauge(mg_metrics *reg, const char *name, const char *help);
mg_histogram *mg_metrics_unlabelled_histogram(mg_metrics *reg, const char *name, const char *help,
                                              double scale);

/* Registers a metric without labels whose value is computed by fn(arg) at every render, as a
 * gauge or as a counter. fn runs on the rendering thread with the registry mutex held: it must
 * be quick and must not call into the registry. arg is borrowed and must stay valid until the
 * registry is destroyed. Returns MG_OK, MG_EINVAL (invalid name or help), MG_EEXIST (name
 * already registered), MG_ELIMIT (series or family limit) or MG_ENOMEM. Any thread. */
int mg_metrics_gauge_fn(mg_metrics *reg, const char *name, const char *help,
                        double (*fn)(void *arg), void *arg);
int mg_metrics_counter_fn(mg_metrics *reg, const char *name, const char *help,
                          double (*fn)(void *arg), void *arg);

/* Counter updates: add delta (or 1). Lock-free, any thread; NULL is ignored. The value wraps
 * modulo 2^64. */
void mg_counter_add(mg_counter *c, uint64_t delta);
void mg_counter_inc(mg_counter *c);
/* Current value (0 for NULL). Any thread. */
uint64_t mg_counter_value(const mg_counter *c);

/* Gauge updates, doubles: set replaces the value, add adjusts it (negative delta lowers it).
 * Lock-free, any thread; NULL is ignored. */
void mg_gauge_set(mg_gauge *g, double value);
void mg_gauge_add(mg_gauge *g, double delta);
/* Current value (0.0 for NULL). Any thread. */
double mg_gauge_value(const mg_gauge *g);

/* Records one value (in the family's recorded unit, clamped to MG_METRICS_HIST_VALUE_MAX) with
 * mg_hist_record_atomic. Lock-free, any thread; NULL is ignored. */
void mg_histogram_observe(mg_histogram *h, uint64_t value);

/* Copies the child's histogram into dst, which must have been initialised with
 * mg_hist_init(dst, MG_METRICS_HIST_PRECISION_BITS, MG_METRICS_HIST_VALUE_MAX). Values are in the
 * recorded unit (unscaled). Any thread. Returns MG_OK or MG_EINVAL (h NULL or dst layout
 * different). */
int mg_histogram_snapshot(const mg_histogram *h, mg_hist *dst);

/* Renders every family, in registration order, in the text exposition format 0.0.4: HELP (when
 * there is help) and TYPE lines, then one sample line per child (children in creation order;
 * summaries: seven quantile lines, _sum and _count). On success *out is a malloc'ed
 * NUL-terminated string the caller frees with free(), and *out_len (if out_len is not NULL) its
 * length without the NUL. Any thread (holds the registry mutex while rendering, and calls the
 * callback metrics). Returns MG_OK or MG_ENOMEM (*out is then NULL). */
int mg_metrics_render(mg_metrics *reg, char **out, size_t *out_len);

/* Adds the standard process metrics, read from /proc/self at every render:
 * process_cpu_seconds_total (counter), process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds (seconds since the Unix epoch, computed once here). A value that
 * cannot be read renders as NaN. Calling it again is a no-op. Any thread.
 * Returns MG_OK or the first error of mg_metrics_gauge_fn / mg_metrics_counter_fn. */
int mg_metrics_register_process(mg_metrics *reg);

#endif

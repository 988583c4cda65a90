/*
 * perf_cursor_acks: memory of a cursor's acknowledgement state (src/cursor/rangeset.h) after N
 * individual acks (default 10 M) in four patterns, using the set directly (no bookies):
 *
 *   every_other   entries 0, 2, 4, ...: the worst case for a range list (one range per ack)
 *   random_half   each entry acked with probability 1/2 (Shared subscription, many consumers)
 *   sparse        one ack every 1..127 entries (mean 64), far above a stuck mark-delete
 *   contiguous    0, 1, 2, ...: a consumer keeping up
 *
 * For each it prints the bytes the set accounts for (mc_rangeset_memory_bytes), the heap bytes
 * really taken (glibc mallinfo2: in-use chunks plus mmap'd blocks, allocator headers included),
 * bytes per ack, the time per add, and, as the same-run reference, the size of the two plain
 * representations of the same acks: a list of [first, last] position pairs (32 bytes per range,
 * what a range list holds) and one bit per entry of the span. The ratios are set bytes / those.
 *
 * Usage: perf_cursor_acks [--acks N] [--json FILE]
 */
#include "cursor/rangeset.h"

#include "common/error.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct result {
    const char *pattern;
    int64_t acks;
    int64_t span_entries;
    int64_t ranges;
    size_t containers;
    size_t set_bytes;
    size_t heap_bytes;
    double ns_per_add;
    double range_list_bytes;
    double bitmap_bytes;
} result;

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes in use on the heap, mmap'd blocks (large arrays) included. */
static size_t heap_now(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static int run(const char *pattern, int64_t acks, result *r)
{
    struct mallinfo2 m0 = mallinfo2();
    size_t heap0 = m0.uordblks + m0.hblkhd;
    mc_rangeset *rs = NULL;
    if (mc_rangeset_create(&rs) != MG_OK)
        return -1;
    int64_t e = 0, n = 0;
    double t0 = now_s();
    while (n < acks) {
        if (strcmp(pattern, "every_other") == 0) {
            e = 2 * n;
        } else if (strcmp(pattern, "random_half") == 0) {
            while (!(rng() & 1))
                e++;
        } else if (strcmp(pattern, "sparse") == 0) {
            e += 1 + (int64_t)(rng() % 127);
        } else {
            e = n;
        }
        int rc = mc_rangeset_add(rs, (ml_position){ 1, e }, NULL);
        if (rc != MG_OK) {
            fprintf(stderr, "add failed: %s\n", mg_strerror(rc));
            mc_rangeset_destroy(rs);
            return -1;
        }
        n++;
        if (strcmp(pattern, "random_half") == 0)
            e++;
    }
    double t1 = now_s();
    *r = (result){
        .pattern = pattern,
        .acks = n,
        .span_entries = e + 1,
        .ranges = mc_rangeset_range_count(rs),
        .containers = mc_rangeset_container_count(rs),
        .set_bytes = mc_rangeset_memory_bytes(rs),
        .heap_bytes = heap_now() - heap0,
        .ns_per_add = (t1 - t0) * 1e9 / (double)n,
    };
    r->range_list_bytes = 32.0 * (double)r->ranges;
    r->bitmap_bytes = (double)r->span_entries / 8.0;
    mc_rangeset_destroy(rs);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t acks = 10000000;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--acks") == 0 && i + 1 < argc) {
            acks = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--acks N] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    if (acks < 1 || acks > 1000000000) {
        fprintf(stderr, "--acks must be 1..1e9\n");
        return 2;
    }
    static const char *const patterns[] = { "every_other", "random_half", "sparse", "contiguous" };
    enum { NPAT = sizeof(patterns) / sizeof(patterns[0]) };
    result res[NPAT];
    printf("cursor ack state after %lld individual acks (mc_rangeset)\n", (long long)acks);
    printf("%-12s %10s %8s %12s %12s %9s %8s %14s %12s\n", "pattern", "ranges", "windows",
           "set_bytes", "heap_bytes", "B/ack", "ns/add", "vs_range_list", "vs_bitmap");
    for (int i = 0; i < NPAT; i++) {
        if (run(patterns[i], acks, &res[i]) != 0)
            return 1;
        const result *r = &res[i];
        printf("%-12s %10lld %8zu %12zu %12zu %9.4f %8.1f %14.5f %12.4f\n", r->pattern,
               (long long)r->ranges, r->containers, r->set_bytes, r->heap_bytes,
               (double)r->set_bytes / (double)r->acks, r->ns_per_add,
               (double)r->set_bytes / r->range_list_bytes, (double)r->set_bytes / r->bitmap_bytes);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f, "{\n  \"benchmark\": \"cursor_acks\",\n  \"acks\": %lld,\n  \"results\": [\n",
                (long long)acks);
        for (int i = 0; i < NPAT; i++) {
            const result *r = &res[i];
            fprintf(f,
                    "    {\"pattern\": \"%s\", \"acks\": %lld, \"span_entries\": %lld, "
                    "\"ranges\": %lld, \"containers\": %zu, \"set_bytes\": %zu, "
                    "\"heap_bytes\": %zu, \"bytes_per_ack\": %.6f, \"ns_per_add\": %.2f, "
                    "\"range_list_bytes\": %.0f, \"ratio_to_range_list\": %.6f, "
                    "\"bitmap_bytes\": %.0f, \"ratio_to_bitmap\": %.6f}%s\n",
                    r->pattern, (long long)r->acks, (long long)r->span_entries,
                    (long long)r->ranges, r->containers, r->set_bytes, r->heap_bytes,
                    (double)r->set_bytes / (double)r->acks, r->ns_per_add, r->range_list_bytes,
                    (double)r->set_bytes / r->range_list_bytes, r->bitmap_bytes,
                    (double)r->set_bytes / r->bitmap_bytes, i + 1 < NPAT ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        fclose(f);
    }
    return 0;
}

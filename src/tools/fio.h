/*
 * fio and the page cache, for the benchmarks (../shared/BENCHMARKS.md): the disk's own figures
 * in the same run as ours, so that ratios compare like with like. fio is run through popen and
 * its JSON searched as text (see fio.c); a missing piece or a failing fio reports the figure as
 * unavailable with the reason, never a guess.
 */
#ifndef MG_TOOLS_FIO_H
#define MG_TOOLS_FIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mg_fio_result {
    bool ok;
    double bw_bytes_per_s;
    double iops;
    double clat_ns_mean;
    double sync_ns_mean; /* -1: not reported */
    char error[256];     /* why ok is false */
} mg_fio_result;

/* Whether an executable fio is on PATH. */
bool mg_fio_installed(void);

/* Sequential O_DIRECT read of size_bytes in 1 MiB blocks at depth 16 (libaio), in dir. */
void mg_fio_seq_read(const char *dir, int64_t size_bytes, mg_fio_result *res);

/* 4 KiB writes each followed by fdatasync, 64 MiB, in dir: the disk's durable-write figure. */
void mg_fio_sync_write(const char *dir, mg_fio_result *res);

/* sync, then 3 > /proc/sys/vm/drop_caches; false with the reason when it cannot. */
bool mg_drop_caches(char *why, size_t why_size);

#endif

/*
 * fio and the page cache for the benchmarks; see fio.h.
 *
 * fio's JSON is read from a pipe (popen) and searched as text, with no JSON library: inside the
 * "jobs" array, the job's "read" or "write" object is found as a key followed by ':' and '{'
 * (so the value "read" of the job option "rw" does not match), and "bw_bytes", "iops" and
 * "clat_ns" -> "mean" are looked up between that key and the next sibling object's key
 * ("write" after "read", "trim" after "write"). Any missing piece, or fio failing, reports fio as
 * unavailable; no figure is ever guessed. fio's file is deleted afterwards.
 */
#include "fio.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/log.h"
#include "tools/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool mg_drop_caches(char *why, size_t why_size)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "3", 1) != 1) {
        int e = errno;
        snprintf(why, why_size, "cannot write /proc/sys/vm/drop_caches: %s%s", strerror(e),
                 e == EACCES || e == EPERM || e == EROFS ? " (needs root)" : "");
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    return true;
}

bool mg_fio_installed(void)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        char candidate[4200];
        if (n > 0 && n < sizeof(candidate) - 5) {
            snprintf(candidate, sizeof(candidate), "%.*s/fio", (int)n, path);
            if (access(candidate, X_OK) == 0)
                return true;
        }
        if (end == NULL)
            break;
        path = end + 1;
    }
    return false;
}

/* Appends src to dst as one single-quoted shell word ('it'\''s'). */
static bool fio_shell_quote(char *dst, size_t dst_capacity, const char *src)
{
    size_t len = strlen(dst);
    if (len + 1 >= dst_capacity)
        return false;
    dst[len++] = '\'';
    for (const char *p = src; *p; p++) {
        const char *piece = *p == '\'' ? "'\\''" : NULL;
        size_t pn = piece ? 4 : 1;
        if (len + pn + 2 >= dst_capacity)
            return false;
        if (piece)
            memcpy(dst + len, piece, pn);
        else
            dst[len] = *p;
        len += pn;
    }
    dst[len++] = '\'';
    dst[len] = '\0';
    return true;
}

/* Finds "key" (with its quotes) in [from, end) used as an object key: followed by blanks, ':',
 * blanks and then `next` (e.g. '{'), or anything but a quote when next is 0 (a number).
 * Returns the position after the ':' and blanks, or NULL. */
static const char *fio_json_key(const char *from, const char *end, const char *key, char next)
{
    char quoted[64];
    int qn = snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    MG_ASSERT(qn > 0 && (size_t)qn < sizeof(quoted));
    const char *p = from;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), quoted, (size_t)qn);
        if (hit == NULL)
            return NULL;
        const char *q = hit + qn;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        if (q < end && *q == ':') {
            q++;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
                q++;
            if (q < end && (next ? *q == next : *q != '"'))
                return q;
        }
        p = hit + qn;
    }
    return NULL;
}

static bool fio_json_number(const char *from, const char *end, const char *key, double *out)
{
    const char *v = fio_json_key(from, end, key, 0);
    if (v == NULL)
        return false;
    char *stop;
    double d = strtod(v, &stop);
    if (stop == v || stop > end)
        return false;
    *out = d;
    return true;
}

/* Extracts the figures of the first job's `dir` object ("read" or "write") from fio's JSON. */
static bool fio_parse(const char *json, size_t len, const char *dir, mg_fio_result *res)
{
    const char *end = json + len;
    const char *jobs = fio_json_key(json, end, "jobs", '[');
    if (jobs == NULL)
        return false;
    const char *obj = fio_json_key(jobs, end, dir, '{');
    if (obj == NULL)
        return false;
    /* the object ends where its next sibling begins: "write" follows "read", "trim" "write" */
    const char *sibling = fio_json_key(obj, end, strcmp(dir, "read") == 0 ? "write" : "trim", '{');
    const char *oend = sibling ? sibling : end;
    const char *clat = fio_json_key(obj, oend, "clat_ns", '{');
    if (!fio_json_number(obj, oend, "bw_bytes", &res->bw_bytes_per_s) ||
        !fio_json_number(obj, oend, "iops", &res->iops) || clat == NULL ||
        !fio_json_number(clat, oend, "mean", &res->clat_ns_mean))
        return false;
    /* fdatasync latency: "sync" -> "lat_ns" -> "mean", after the direction objects */
    res->sync_ns_mean = -1;
    const char *sync = fio_json_key(oend, end, "sync", '{');
    const char *slat = sync ? fio_json_key(sync, end, "lat_ns", '{') : NULL;
    double v;
    if (slat && fio_json_number(slat, end, "mean", &v) && v > 0)
        res->sync_ns_mean = v;
    return res->bw_bytes_per_s > 0 && res->iops > 0;
}

/* Runs `fio <args> --output-format=json` in dir, reads its JSON from a pipe and parses the
 * `dir_key` object; deletes fio's file afterwards. res->ok false (with a reason) on any failure. */
static void fio_run(const char *dir, const char *file, const char *args, const char *dir_key,
                    mg_fio_result *res)
{
    memset(res, 0, sizeof(*res));
    char qdir[FIO_COMMAND_BYTES_MAX / 2] = "";
    char cmd[FIO_COMMAND_BYTES_MAX];
    int n = -1;
    if (fio_shell_quote(qdir, sizeof(qdir), dir))
        n = snprintf(cmd, sizeof(cmd),
                     "fio --directory=%s --filename=%s %s --runtime=%d --output-format=json", qdir,
                     file, args, FIO_RUNTIME_S);
    if (n < 0 || (size_t)n >= sizeof(cmd)) {
        snprintf(res->error, sizeof(res->error), "the fio command line is too long");
        return;
    }
    MG_INFO("perf: running %s", cmd);
    FILE *pipe = popen(cmd, "r");
    if (pipe == NULL) {
        snprintf(res->error, sizeof(res->error), "cannot start fio: %s", strerror(errno));
        return;
    }
    char *out = mg_malloc(FIO_OUTPUT_BYTES_MAX + 1);
    size_t len = 0;
    bool too_long = false;
    char sink[4096];
    for (;;) {
        size_t got = out && len < FIO_OUTPUT_BYTES_MAX
                         ? fread(out + len, 1, FIO_OUTPUT_BYTES_MAX - len, pipe)
                         : fread(sink, 1, sizeof(sink), pipe); /* drain, so fio can finish */
        if (got == 0)
            break;
        if (out && len < FIO_OUTPUT_BYTES_MAX)
            len += got;
        else
            too_long = true;
    }
    int st = pclose(pipe);
    char path[PATH_MAX + 256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (unlink(path) != 0 && errno != ENOENT)
        MG_WARN("perf: cannot delete fio's file %s: %s", path, strerror(errno));
    if (out == NULL) {
        snprintf(res->error, sizeof(res->error), "out of memory for fio's output");
    } else if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(res->error, sizeof(res->error), "fio failed (exit status %d)",
                 st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    } else if (too_long) {
        snprintf(res->error, sizeof(res->error), "fio printed more than %u bytes",
                 FIO_OUTPUT_BYTES_MAX);
    } else {
        out[len] = '\0';
        if (fio_parse(out, len, dir_key, res))
            res->ok = true;
        else
            snprintf(res->error, sizeof(res->error),
                     "fio's JSON has no usable \"%s\" figures (bw_bytes, iops, clat_ns mean)",
                     dir_key);
    }
    mg_free(out);
}

void mg_fio_seq_read(const char *dir, int64_t size_bytes, mg_fio_result *res)
{
    char args[256];
    snprintf(args, sizeof(args),
             "--name=seqread --rw=read --bs=1M --direct=1 --ioengine=libaio --iodepth=16 "
             "--size=%" PRId64,
             size_bytes);
    fio_run(dir, "magnetar-perf-fio.seqread", args, "read", res);
}

void mg_fio_sync_write(const char *dir, mg_fio_result *res)
{
    fio_run(dir, "magnetar-perf-fio.syncwrite",
            "--name=syncwrite --rw=write --bs=4k --fdatasync=1 --size=64M", "write", res);
}

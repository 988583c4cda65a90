/*
 * A real `magnetar standalone` for tests (see sa_harness.h for the lifecycle and its
 * invariants).
 *
 * Start: mkdtemp a directory under /var/tmp, fork and exec $MG_BIN with its output appended to
 * <dir>/standalone.log, then poll (every SAH_POLL_MS) the part of the log this run wrote for
 * the ready line, checking between polls that the child is still alive. The first start asks
 * for ports the harness picked free below the kernel's range of ephemeral ports (SAH_PORT_LO to
 * SAH_PORT_HI, each checked by binding it) and learns the ports from that line; a restart asks for
 * the ports the first run got, so a client that remembers the service URL finds the standalone
 * again. Ports of the ephemeral range would not do: while the standalone is down for a restart,
 * any process's outgoing connection may take one of them (parallel tests make many), and the
 * restart then fails with "address already in use". A first start that still finds a port taken
 * (another test's harness chose it meanwhile) is made again with other ports. The
 * words of MG_TEST_STANDALONE_ARGS are read once, at sah_start, and kept with the test's own
 * extra arguments: a restart runs in the same mode as the first start.
 *
 * Everything the child needs (argv, paths, file descriptors) is prepared before fork(): the test
 * process may have threads (libuv's thread pool, the client's), so the child only makes
 * async-signal-safe calls before execv(). curl for sah_http is started with posix_spawnp, which
 * needs no such care.
 */
#include "support/sa_harness.h"

#include "support/rm_tree.h"

#include "common/error.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAH_DIR_TEMPLATE "/var/tmp/magnetar-sa-XXXXXX"
#define SAH_READY_MARK   "ready: pulsar://127.0.0.1:"
#define SAH_READY_FORMAT \
    SAH_READY_MARK "%u, admin and metrics on http://127.0.0.1:%u, bookie 127.0.0.1:%u"
/* What the ready line says of the Kafka port, when it serves one: ", kafka 127.0.0.1:PORT". */
#define SAH_READY_KAFKA    ", kafka 127.0.0.1:"
#define SAH_POLL_MS        20
#define SAH_STOP_POLL_MS   10
#define SAH_LINE_BYTES_MAX 2048
/* The fixed part of the command line (20 words), the extra arguments and the final NULL. */
#define SAH_ARGV_MAX       (27 + SAH_EXTRA_ARGS_MAX)
/* sah_http: what curl writes on stderr after the request, before the status code. */
#define SAH_HTTP_MARK      "mg-http-status "
#define SAH_HTTP_GRACE_MS  5000
#define SAH_HTTP_ERR_BYTES 1024
#define SAH_URL_BYTES_MAX  512
/* The ports picked for a first start: below net.ipv4.ip_local_port_range (32768 by default), so
 * no outgoing connection is given one, and above the usual fixed ports of services. */
#define SAH_PORT_LO        16000
#define SAH_PORT_HI        32000
#define SAH_PORT_TRIES     64
#define SAH_START_ATTEMPTS 3
/* Arguments for every standalone of the run (see sa_harness.h). */
#define SAH_ENV_ARGS       "MG_TEST_STANDALONE_ARGS"

int64_t sah_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sah_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sah_metric(const char *text, const char *name, const char *label)
{
    char prefix[192];
    snprintf(prefix, sizeof(prefix), "%s{", name);
    size_t plen = strlen(prefix);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > plen && strncmp(line, prefix, plen) == 0) {
            const char *close = memchr(line, '}', len);
            const char *l = strstr(line, label);
            if (close != NULL && l != NULL && l < close)
                return strtod(close + 1, NULL);
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return -1;
}

static void sah_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static pid_t sah_waitpid(pid_t pid, int *status, int options)
{
    pid_t r;
    do {
        r = waitpid(pid, status, options);
    } while (r < 0 && errno == EINTR);
    return r;
}

/* The next word of a MG_TEST_STANDALONE_ARGS string at or after p, its length in *len; NULL
 * when only blanks are left. */
static const char *sah_next_word(const char *p, size_t *len)
{
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return NULL;
    *len = strcspn(p, " \t");
    return p;
}

static void sah_remove_dir(sah_standalone *s)
{
    if (s->dir[0] != '\0')
        mgt_rm_tree(s->dir);
    s->dir[0] = '\0';
    s->log[0] = '\0';
}

/* Appends the len bytes at arg to s->extra as one more argument (*used: bytes taken). */
static int sah_add_extra_arg(sah_standalone *s, size_t *used, const char *arg, size_t len)
{
    if (s->extra_count >= SAH_EXTRA_ARGS_MAX || len + 1 > sizeof(s->extra) - *used) {
        MG_ERROR("sa harness: more than %d extra arguments or %d bytes of them (%s included)",
                 SAH_EXTRA_ARGS_MAX, SAH_EXTRA_ARGS_BYTES_MAX, SAH_ENV_ARGS);
        return MG_ELIMIT;
    }
    memcpy(s->extra + *used, arg, len);
    s->extra[*used + len] = '\0';
    *used += len + 1;
    s->extra_count++;
    return MG_OK;
}

/* Copies the NULL-terminated extra_args, then the words of SAH_ENV_ARGS, into s->extra. */
static int sah_keep_extra_args(sah_standalone *s, const char *const *extra_args)
{
    s->extra_count = 0;
    size_t used = 0;
    for (int i = 0; extra_args != NULL && extra_args[i] != NULL; i++)
        MG_TRY(sah_add_extra_arg(s, &used, extra_args[i], strlen(extra_args[i])));
    const char *w = getenv(SAH_ENV_ARGS);
    size_t len;
    while (w != NULL && (w = sah_next_word(w, &len)) != NULL) {
        MG_TRY(sah_add_extra_arg(s, &used, w, len));
        w += len;
    }
    return MG_OK;
}

bool sah_env_option(const char *option, char *value, size_t cap)
{
    const char *w = getenv(SAH_ENV_ARGS);
    const char *found = NULL;
    size_t len, found_len = 0;
    bool after_option = false;
    while (w != NULL && (w = sah_next_word(w, &len)) != NULL) {
        if (after_option) {
            found = w;
            found_len = len;
        }
        after_option = len == strlen(option) && memcmp(w, option, len) == 0;
        w += len;
    }
    if (found == NULL || cap == 0)
        return false;
    if (found_len > cap - 1)
        found_len = cap - 1;
    memcpy(value, found, found_len);
    value[found_len] = '\0';
    return true;
}

/* Forks the standalone with the ports in s (0: any), its output appended to s->log. */
static int sah_spawn(sah_standalone *s)
{
    const char *bin = getenv("MG_BIN");
    if (bin == NULL || bin[0] == '\0') {
        MG_ERROR("sa harness: MG_BIN must name the magnetar binary");
        return MG_EINVAL;
    }
    char data[SAH_PATH_BYTES_MAX], bp[8], hp[8], kp[8], fp[8];
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(bp, sizeof(bp), "%u", (unsigned)s->broker_port);
    snprintf(hp, sizeof(hp), "%u", (unsigned)s->http_port);
    snprintf(kp, sizeof(kp), "%u", (unsigned)s->bookie_port);
    snprintf(fp, sizeof(fp), "%u", (unsigned)s->kafka_port);
    const char *argv[SAH_ARGV_MAX] = {
        bin,
        "standalone",
        "--data-dir",
        data,
        "--bind-address",
        "127.0.0.1",
        "--advertised-address",
        "127.0.0.1",
        "--broker-port",
        bp,
        "--bookie-port",
        kp,
        "--http-port",
        hp,
        "--write-cache-mb",
        "8",
        "--read-cache-mb",
        "8",
        "--log-level",
        "info",
        /* The chat roles bind fixed ports and create the chat topics: off unless a test asks for
         * them in its extra arguments (a later option wins). */
        "--chat-gateway",
        "off",
        "--chat-job",
        "off",
        /* The Kafka port on a free port, so that parallel standalones do not collide (a restart
         * asks for the one the first run got). */
        "--kafka-port",
        fp,
    };
    int argc = 26;
    const char *e = s->extra;
    for (int i = 0; i < s->extra_count; i++) {
        argv[argc++] = e;
        e += strlen(e) + 1;
    }
    argv[argc] = NULL;

    int log_fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        MG_ERROR("sa harness: cannot open %s: %s", s->log, strerror(errno));
        return MG_EIO;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        close(log_fd);
        return MG_ESYS;
    }
    s->log_from = lseek(log_fd, 0, SEEK_END);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        MG_ERROR("sa harness: fork: %s", strerror(errno));
        close(log_fd);
        close(null_fd);
        return MG_ESYS;
    }
    if (pid == 0) {
        /* Child: async-signal-safe calls only. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the starter died before prctl took effect */
        dup2(null_fd, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(log_fd);
    close(null_fd);
    s->pid = pid;
    return MG_OK;
}

/* Looks for the ready line in what the current run wrote; sets the ports when found. */
static bool sah_read_ready(sah_standalone *s)
{
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return false;
    bool ready = false;
    char line[SAH_LINE_BYTES_MAX];
    if (fseeko(f, s->log_from, SEEK_SET) == 0) {
        while (!ready && fgets(line, sizeof(line), f) != NULL) {
            const char *p = strstr(line, SAH_READY_MARK);
            unsigned b, h, k, kf = 0;
            if (p != NULL && sscanf(p, SAH_READY_FORMAT, &b, &h, &k) == 3 && b > 0 &&
                b <= UINT16_MAX && h > 0 && h <= UINT16_MAX && k > 0 && k <= UINT16_MAX) {
                const char *kafka = strstr(p, SAH_READY_KAFKA);
                if (kafka != NULL &&
                    (sscanf(kafka + strlen(SAH_READY_KAFKA), "%u", &kf) != 1 || kf > UINT16_MAX))
                    kf = 0;
                s->broker_port = (uint16_t)b;
                s->http_port = (uint16_t)h;
                s->bookie_port = (uint16_t)k;
                s->kafka_port = (uint16_t)kf;
                ready = true;
            }
        }
    }
    fclose(f);
    return ready;
}

/* Whether port is free on 127.0.0.1 now (a bind succeeds; the socket is closed again). */
static bool sah_port_free(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Picks four distinct free ports in [SAH_PORT_LO, SAH_PORT_HI) for a first start. */
static int sah_pick_ports(sah_standalone *s)
{
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() ^ (unsigned)sah_now_ms();
    uint16_t *ports[] = { &s->broker_port, &s->http_port, &s->bookie_port, &s->kafka_port };
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        uint16_t p = 0;
        for (int t = 0; t < SAH_PORT_TRIES && p == 0; t++) {
            uint16_t c = (uint16_t)(SAH_PORT_LO + rand_r(&seed) % (SAH_PORT_HI - SAH_PORT_LO));
            bool taken = false;
            for (size_t j = 0; j < i; j++)
                taken = taken || *ports[j] == c;
            if (!taken && sah_port_free(c))
                p = c;
        }
        if (p == 0) {
            MG_ERROR("sa harness: no free port found in [%d, %d)", SAH_PORT_LO, SAH_PORT_HI);
            return MG_EAGAIN;
        }
        *ports[i] = p;
    }
    return MG_OK;
}

/* Spawns the standalone and waits (bounded) for its ready line. On failure nothing runs. */
static int sah_launch(sah_standalone *s)
{
    MG_TRY(sah_spawn(s));
    int64_t deadline = sah_now_ms() + SAH_START_TIMEOUT_MS;
    for (;;) {
        int status = 0;
        if (sah_waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            MG_ERROR("sa harness: the standalone exited during start-up (wait status %d)", status);
            return MG_ECLOSED;
        }
        if (sah_read_ready(s))
            return MG_OK;
        if (sah_now_ms() >= deadline) {
            MG_ERROR("sa harness: the standalone was not ready within %d ms", SAH_START_TIMEOUT_MS);
            sah_kill(s);
            return MG_ETIMEDOUT;
        }
        sah_sleep_ms(SAH_POLL_MS);
    }
}

int sah_start(sah_standalone *s, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    MG_TRY(sah_keep_extra_args(s, extra_args));
    snprintf(s->dir, sizeof(s->dir), "%s", SAH_DIR_TEMPLATE);
    if (mkdtemp(s->dir) == NULL) {
        MG_ERROR("sa harness: mkdtemp %s: %s", SAH_DIR_TEMPLATE, strerror(errno));
        s->dir[0] = '\0';
        return MG_EIO;
    }
    snprintf(s->log, sizeof(s->log), "%s/standalone.log", s->dir);
    int rc = MG_EAGAIN;
    for (int attempt = 0; attempt < SAH_START_ATTEMPTS && rc != MG_OK; attempt++) {
        rc = sah_pick_ports(s);
        if (rc == MG_OK)
            rc = sah_launch(s);
        /* An exit during start-up is most likely a port taken since it was picked: again with
         * others. Anything else (a timeout) is not made better by trying again. */
        if (rc != MG_ECLOSED)
            break;
        MG_WARN("sa harness: the standalone exited during start-up; starting it again on "
                "other ports");
    }
    if (rc != MG_OK) {
        sah_dump_log(s);
        sah_kill(s);
        sah_remove_dir(s);
        s->broker_port = s->http_port = s->bookie_port = s->kafka_port = 0;
    }
    return rc;
}

int sah_restart(sah_standalone *s)
{
    if (s->dir[0] == '\0' || s->broker_port == 0)
        return MG_ESTATE;
    if (s->pid > 0)
        sah_stop(s, NULL);
    int rc = sah_launch(s);
    if (rc != MG_OK) {
        sah_dump_log(s);
        sah_kill(s);
    }
    return rc;
}

int sah_stop(sah_standalone *s, int *wait_status)
{
    if (wait_status != NULL)
        *wait_status = 0;
    if (s->pid <= 0)
        return MG_ESTATE;
    pid_t pid = s->pid;
    kill(pid, SIGTERM);
    int status = 0;
    pid_t r;
    int64_t deadline = sah_now_ms() + SAH_STOP_TIMEOUT_MS;
    while ((r = sah_waitpid(pid, &status, WNOHANG)) == 0 && sah_now_ms() < deadline)
        sah_sleep_ms(SAH_STOP_POLL_MS);
    if (r == 0) {
        MG_ERROR("sa harness: the standalone (pid %d) did not stop within %d ms of SIGTERM",
                 (int)pid, SAH_STOP_TIMEOUT_MS);
        sah_kill(s);
        return MG_ETIMEDOUT;
    }
    s->pid = 0;
    if (r != pid) {
        MG_ERROR("sa harness: waitpid %d: %s", (int)pid, strerror(errno));
        return MG_ESYS;
    }
    if (wait_status != NULL)
        *wait_status = status;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        MG_ERROR("sa harness: the standalone did not exit cleanly (wait status %d)", status);
        return MG_EIO;
    }
    return MG_OK;
}

void sah_kill(sah_standalone *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    sah_waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

void sah_destroy(sah_standalone *s)
{
    sah_kill(s);
    sah_remove_dir(s);
    s->broker_port = s->http_port = s->bookie_port = s->kafka_port = 0;
}

void sah_dump_log(const sah_standalone *s)
{
    if (s->log[0] == '\0')
        return;
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return;
    char tail[SAH_LOG_TAIL_BYTES + 1];
    fseeko(f, 0, SEEK_END);
    off_t size = ftello(f);
    fseeko(f, size > SAH_LOG_TAIL_BYTES ? size - SAH_LOG_TAIL_BYTES : 0, SEEK_SET);
    size_t n = fread(tail, 1, SAH_LOG_TAIL_BYTES, f);
    tail[n] = '\0';
    fclose(f);
    fprintf(stderr, "---- last %zu bytes of %s ----\n%s---- end of log ----\n", n, s->log, tail);
}

/* ---- sah_http ------------------------------------------------------------------------------- */

/* Reads what is there from fd into buf (keeping at most cap - 1 bytes, NUL-terminated; the rest
 * is read and dropped, and *overflow set unless cap is 0: nothing was wanted). Returns false at
 * end of file or on an error. */
static bool sah_drain(int fd, char *buf, size_t cap, size_t *len, bool *overflow)
{
    char scratch[4096];
    char *to = scratch;
    size_t room = sizeof(scratch);
    if (cap > 0 && *len < cap - 1) {
        to = buf + *len;
        room = cap - 1 - *len;
    }
    ssize_t n = read(fd, to, room);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    if (to == scratch)
        *overflow = *overflow || cap > 0;
    else {
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return true;
}

int sah_http(const sah_standalone *s, const char *method, const char *path, const char *body,
             char *out, size_t cap)
{
    if (s->http_port == 0 || method == NULL || path == NULL || path[0] != '/' ||
        (out == NULL) != (cap == 0))
        return MG_EINVAL;
    if (out != NULL)
        out[0] = '\0';
    char url[SAH_URL_BYTES_MAX], max_time[16];
    int n = snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)s->http_port, path);
    if (n <= 0 || (size_t)n >= sizeof(url))
        return MG_EINVAL;
    snprintf(max_time, sizeof(max_time), "%d", SAH_HTTP_TIMEOUT_MS / 1000);
    const char *argv[16] = {
        "curl", "-sS", "-m", max_time, "-X",
        method, "-o",  "-",  "-w",     "%{stderr}\n" SAH_HTTP_MARK "%{http_code}\n"
    };
    int argc = 10;
    if (body != NULL) {
        argv[argc++] = "-H";
        argv[argc++] = "Content-Type: application/json";
        argv[argc++] = "--data-raw";
        argv[argc++] = body;
    }
    argv[argc++] = url;
    argv[argc] = NULL;

    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0)
        return MG_ESYS;
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        return MG_ESYS;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    pid_t pid;
    int err = posix_spawnp(&pid, "curl", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (err != 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        MG_ERROR("sa harness: cannot run curl: %s", strerror(err));
        return err == ENOENT ? MG_ENOTFOUND : MG_ESYS;
    }

    char errbuf[SAH_HTTP_ERR_BYTES] = "";
    size_t out_len = 0, err_len = 0;
    bool overflow = false, err_overflow = false;
    struct pollfd p[2] = { { .fd = out_pipe[0], .events = POLLIN },
                           { .fd = err_pipe[0], .events = POLLIN } };
    int64_t deadline = sah_now_ms() + SAH_HTTP_TIMEOUT_MS + SAH_HTTP_GRACE_MS;
    int64_t left;
    while ((p[0].fd >= 0 || p[1].fd >= 0) && (left = deadline - sah_now_ms()) > 0) {
        if (poll(p, 2, (int)left) <= 0)
            continue;
        if (p[0].revents != 0 && !sah_drain(p[0].fd, out, cap, &out_len, &overflow)) {
            close(p[0].fd);
            p[0].fd = -1;
        }
        if (p[1].revents != 0 &&
            !sah_drain(p[1].fd, errbuf, sizeof(errbuf), &err_len, &err_overflow)) {
            close(p[1].fd);
            p[1].fd = -1;
        }
    }
    bool timed_out = p[0].fd >= 0 || p[1].fd >= 0;
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    sah_waitpid(pid, &status, 0);
    if (timed_out) {
        MG_ERROR("sa harness: curl %s %s did not finish within %d ms", method, url,
                 SAH_HTTP_TIMEOUT_MS + SAH_HTTP_GRACE_MS);
        return MG_ETIMEDOUT;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        MG_ERROR("sa harness: curl %s %s failed (wait status %d): %s", method, url, status, errbuf);
        return MG_EIO;
    }
    if (overflow) {
        MG_ERROR("sa harness: the answer to %s %s is longer than %zu bytes", method, url, cap - 1);
        return MG_ELIMIT;
    }
    const char *mark = strstr(errbuf, SAH_HTTP_MARK);
    int code = 0;
    if (mark == NULL || sscanf(mark + strlen(SAH_HTTP_MARK), "%d", &code) != 1 || code < 100 ||
        code > 599) {
        MG_ERROR("sa harness: no HTTP status from curl %s %s: %s", method, url, errbuf);
        return MG_EPROTO;
    }
    return code;
}

int sah_metrics_get(const sah_standalone *s, size_t cap, char **out)
{
    *out = cap > 0 ? malloc(cap) : NULL;
    if (*out == NULL)
        return MG_ENOMEM;
    return sah_http(s, "GET", "/metrics", NULL, *out, cap);
}

uint16_t sah_kafka_port(const sah_standalone *s)
{
    return s->pid > 0 ? s->kafka_port : 0;
}

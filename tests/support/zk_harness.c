/*
 * A real ZooKeeper server for tests (see zk_harness.h for the lifecycle and its invariants).
 *
 * Start: mkdtemp a directory, write zoo.cfg (fast ticks so that session timeouts of one second
 * are allowed, admin server off, only the "ruok" and "srvr" four-letter words), pick a port by
 * binding port 0 on loopback and closing it, fork and exec the JVM with its output in zk.log,
 * then poll until "ruok" answers "imok" and "srvr" reports a mode (the server serves sessions),
 * while checking the child is still alive. A child that exits
 * early (its port taken meanwhile, typically) is retried on another port.
 *
 * Everything the child needs (argv, paths, file descriptors) is prepared before fork(): the
 * test process may have threads (ZooKeeper client threads during zkh_restart), so the child
 * only makes async-signal-safe calls before execv().
 */
#include "support/zk_harness.h"

#include "support/rm_tree.h"

#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define ZKH_DEFAULT_CLASSPATH "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
#define ZKH_DEFAULT_JAR       "/usr/share/java/zookeeper.jar"
#define ZKH_MAIN_CLASS        "org.apache.zookeeper.server.ZooKeeperServerMain"
#define ZKH_POLL_MS           50
#define ZKH_PATH_BYTES_MAX    4096
#define ZKH_LOG_TAIL_BYTES    4096

static int64_t zkh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void zkh_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool zkh_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Finds java: $JAVA_HOME/bin/java, else the first java on PATH. */
static bool zkh_find_java(char *out, size_t cap)
{
    const char *home = getenv("JAVA_HOME");
    if (home != NULL && home[0] != '\0') {
        int n = snprintf(out, cap, "%s/bin/java", home);
        if (n > 0 && (size_t)n < cap && zkh_executable(out))
            return true;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end == NULL ? strlen(path) : (size_t)(end - path);
        if (len > 0) {
            int n = snprintf(out, cap, "%.*s/java", (int)len, path);
            if (n > 0 && (size_t)n < cap && zkh_executable(out))
                return true;
        }
        if (end == NULL)
            break;
        path = end + 1;
    }
    return false;
}

static int zkh_pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

/* Sends a four-letter word and reads the answer (at most cap - 1 bytes, NUL-terminated).
 * Each socket operation is bounded by one second. Returns the byte count or -1. */
static int zkh_four_letters(int port, const char *word, char *answer, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int got = -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        send(fd, word, strlen(word), MSG_NOSIGNAL) == (ssize_t)strlen(word)) {
        got = 0;
        while ((size_t)got < cap - 1) {
            ssize_t n = recv(fd, answer + got, cap - 1 - (size_t)got, 0);
            if (n <= 0)
                break;
            got += (int)n;
        }
        answer[got] = '\0';
    }
    close(fd);
    return got;
}

/* ZooKeeper 3.8 answers "ruok" with "imok" as soon as it listens, before it serves sessions (a
 * client that connects then is dropped); "srvr" says "not currently serving requests" until
 * the server runs, then reports its mode. Both must agree. */
static bool zkh_serving(int port)
{
    char answer[1024];
    if (zkh_four_letters(port, "ruok", answer, sizeof(answer)) != 4 || strcmp(answer, "imok") != 0)
        return false;
    return zkh_four_letters(port, "srvr", answer, sizeof(answer)) > 0 &&
           strstr(answer, "Mode: ") != NULL;
}

static void zkh_print_log(const zkh *h)
{
    char path[ZKH_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "%s/zk.log", h->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[ZKH_LOG_TAIL_BYTES + 1];
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > ZKH_LOG_TAIL_BYTES ? size - ZKH_LOG_TAIL_BYTES : 0;
    ssize_t n = pread(fd, buf, ZKH_LOG_TAIL_BYTES, from);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        MG_ERROR("zk harness: end of the server log %s:\n%s", path, buf);
    }
}

static int zkh_write_config(const zkh *h, int port)
{
    char path[ZKH_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "%s/zoo.cfg", h->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        MG_ERROR("zk harness: cannot write %s: %s", path, strerror(errno));
        return MG_EIO;
    }
    /* tickTime 500 ms with minSessionTimeout 1000 lets tests use short session timeouts;
     * forceSync=no skips fsync (the data survives a server process restart, which is all the
     * tests need). */
    fprintf(f,
            "tickTime=500\n"
            "dataDir=%s/data\n"
            "clientPortAddress=127.0.0.1\n"
            "clientPort=%d\n"
            "admin.enableServer=false\n"
            "minSessionTimeout=1000\n"
            "maxSessionTimeout=60000\n"
            "4lw.commands.whitelist=ruok,srvr\n"
            "forceSync=no\n",
            h->dir, port);
    if (fclose(f) != 0) {
        MG_ERROR("zk harness: cannot write %s: %s", path, strerror(errno));
        return MG_EIO;
    }
    return MG_OK;
}

/* Whether the server has exited; if so collects it. While the exited leader is not yet reaped
 * its process group id cannot be reused, so the rest of the group (if the JVM left anything)
 * is killed first without risk of hitting an unrelated process. */
static bool zkh_reap(zkh *h, bool block)
{
    if (h->pid <= 0)
        return true;
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int r;
    do {
        r = waitid(P_PID, (id_t)h->pid, &info, WEXITED | WNOWAIT | (block ? 0 : WNOHANG));
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == ECHILD) {
        h->pid = 0;
        return true;
    }
    if (r < 0 || info.si_pid != h->pid)
        return false;
    kill(-h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
    return true;
}

/* Forks the JVM for the config in h->dir. */
static int zkh_spawn(zkh *h, const char *java, const char *classpath)
{
    char cfg[ZKH_PATH_BYTES_MAX];
    char log[ZKH_PATH_BYTES_MAX];
    snprintf(cfg, sizeof(cfg), "%s/zoo.cfg", h->dir);
    snprintf(log, sizeof(log), "%s/zk.log", h->dir);
    char *argv[] = {
        (char *)java,
        "-Xms16m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-Djava.net.preferIPv4Stack=true",
        "-Dzookeeper.admin.enableServer=false",
        "-cp",
        (char *)classpath,
        ZKH_MAIN_CLASS,
        cfg,
        NULL,
    };
    int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        MG_ERROR("zk harness: cannot open %s: %s", log, strerror(errno));
        return MG_EIO;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        close(log_fd);
        return MG_ESYS;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        MG_ERROR("zk harness: fork: %s", strerror(errno));
        close(log_fd);
        close(null_fd);
        return MG_ESYS;
    }
    if (pid == 0) {
        /* Child: async-signal-safe calls only. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the starter died before prctl took effect */
        dup2(null_fd, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execv(java, argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no window where a signal to the group misses it */
    close(log_fd);
    close(null_fd);
    h->pid = pid;
    return MG_OK;
}

/* Signals the process group, waits up to ZKH_STOP_TIMEOUT_MS, then kills it. */
static void zkh_kill(zkh *h)
{
    if (h->pid <= 0)
        return;
    if (zkh_reap(h, false))
        return;
    pid_t pid = h->pid;
    kill(-pid, SIGTERM);
    int64_t deadline = zkh_now_ms() + ZKH_STOP_TIMEOUT_MS;
    while (!zkh_reap(h, false)) {
        if (zkh_now_ms() >= deadline) {
            MG_WARN("zk harness: server %d ignored SIGTERM for %d ms, killing it", (int)pid,
                    ZKH_STOP_TIMEOUT_MS);
            kill(-pid, SIGKILL);
            zkh_reap(h, true);
            break;
        }
        zkh_sleep_ms(10);
    }
}

/* Starts the server on port (config rewritten) and waits until it answers. */
static int zkh_launch(zkh *h, int port, const char *java, const char *classpath)
{
    MG_TRY(zkh_write_config(h, port));
    MG_TRY(zkh_spawn(h, java, classpath));
    h->port = port;
    snprintf(h->url, sizeof(h->url), "zk:127.0.0.1:%d", port);
    int64_t deadline = zkh_now_ms() + ZKH_START_TIMEOUT_MS;
    for (;;) {
        if (zkh_reap(h, false)) {
            MG_ERROR("zk harness: the server exited during start-up (port %d)", port);
            return MG_EAGAIN;
        }
        if (zkh_serving(port) && !zkh_reap(h, false))
            return MG_OK;
        if (zkh_now_ms() >= deadline) {
            MG_ERROR("zk harness: the server did not answer on port %d within %d ms", port,
                     ZKH_START_TIMEOUT_MS);
            zkh_kill(h);
            return MG_ETIMEDOUT;
        }
        zkh_sleep_ms(ZKH_POLL_MS);
    }
}

static int zkh_prerequisites(char *java, size_t cap, const char **classpath)
{
    if (!zkh_find_java(java, cap)) {
        MG_ERROR("zk harness: no java found (JAVA_HOME or PATH): the ZooKeeper tests need a "
                 "JVM; install Debian's `zookeeper` package (it pulls in a JRE)");
        return MG_ENOTFOUND;
    }
    const char *cp = getenv("MG_ZK_CLASSPATH");
    if (cp == NULL || cp[0] == '\0') {
        if (access(ZKH_DEFAULT_JAR, R_OK) != 0) {
            MG_ERROR("zk harness: %s is missing: the ZooKeeper tests need Debian's `zookeeper` "
                     "package (or MG_ZK_CLASSPATH pointing at a ZooKeeper server classpath)",
                     ZKH_DEFAULT_JAR);
            return MG_ENOTFOUND;
        }
        cp = ZKH_DEFAULT_CLASSPATH;
    }
    *classpath = cp;
    return MG_OK;
}

static void zkh_remove_dir(zkh *h)
{
    if (h->dir[0] == '\0')
        return;
    mgt_rm_tree(h->dir);
    h->dir[0] = '\0';
}

int zkh_start(zkh *h)
{
    memset(h, 0, sizeof(*h));
    char java[ZKH_PATH_BYTES_MAX];
    const char *classpath = NULL;
    MG_TRY(zkh_prerequisites(java, sizeof(java), &classpath));

    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    int n = snprintf(h->dir, sizeof(h->dir), "%s/mg-zk-XXXXXX", tmp);
    if (n <= 0 || (size_t)n >= sizeof(h->dir) || mkdtemp(h->dir) == NULL) {
        MG_ERROR("zk harness: cannot create a directory under %s: %s", tmp, strerror(errno));
        h->dir[0] = '\0';
        return MG_EIO;
    }
    char data[ZKH_PATH_BYTES_MAX];
    snprintf(data, sizeof(data), "%s/data", h->dir);
    if (mkdir(data, 0755) != 0) {
        MG_ERROR("zk harness: cannot create %s: %s", data, strerror(errno));
        zkh_remove_dir(h);
        return MG_EIO;
    }

    int rc = MG_EAGAIN;
    for (int attempt = 0; attempt < ZKH_START_ATTEMPTS && rc == MG_EAGAIN; attempt++) {
        int port = zkh_pick_port();
        if (port <= 0) {
            MG_ERROR("zk harness: cannot find a free loopback port: %s", strerror(errno));
            rc = MG_ESYS;
            break;
        }
        rc = zkh_launch(h, port, java, classpath);
    }
    if (rc != MG_OK) {
        zkh_print_log(h);
        zkh_kill(h);
        zkh_remove_dir(h);
        h->port = 0;
        h->url[0] = '\0';
        return rc == MG_EAGAIN ? MG_ETIMEDOUT : rc;
    }
    return MG_OK;
}

int zkh_stop(zkh *h)
{
    zkh_kill(h);
    return MG_OK;
}

int zkh_restart(zkh *h)
{
    if (h->dir[0] == '\0' || h->port <= 0)
        return MG_ESTATE;
    char java[ZKH_PATH_BYTES_MAX];
    const char *classpath = NULL;
    MG_TRY(zkh_prerequisites(java, sizeof(java), &classpath));
    zkh_kill(h);
    int rc = MG_EAGAIN;
    for (int attempt = 0; attempt < ZKH_START_ATTEMPTS && rc == MG_EAGAIN; attempt++) {
        if (attempt > 0)
            zkh_sleep_ms(500); /* the port may still be held by the previous server */
        rc = zkh_launch(h, h->port, java, classpath);
    }
    if (rc != MG_OK) {
        zkh_print_log(h);
        zkh_kill(h);
        return rc == MG_EAGAIN ? MG_ETIMEDOUT : rc;
    }
    return MG_OK;
}

void zkh_destroy(zkh *h)
{
    zkh_kill(h);
    zkh_remove_dir(h);
    h->port = 0;
    h->url[0] = '\0';
}

const char *zkh_url(const zkh *h)
{
    return h->url;
}

int zkh_port(const zkh *h)
{
    return h->port;
}

bool zkh_running(zkh *h)
{
    return h->pid > 0 && !zkh_reap(h, false);
}

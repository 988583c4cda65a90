/*
 * The client object (client.h; internals in client_int.h): options and the service URL, the
 * timer heap every other file schedules on, housekeeping (request and send timeouts,
 * keep-alive), the map from producer/consumer ids to their parts, message ids, and closing.
 *
 * TIMER HEAP
 *   A binary min-heap of pc__timer nodes by due time; the one uv_timer is armed for the top.
 *   Each node reserves its slot when registered, so pc__timer_start never allocates. A pass
 *   runs at most as many expired nodes as the heap held when it began (plus a margin), so a
 *   callback that re-arms itself for "now" cannot hold the loop: it runs in the next pass.
 *
 * CLOSING (pc_client_close)
 *   closing is set and a zero-delay timer runs the rest from the loop: producers and consumers
 *   fail what they hold with MG_ECLOSED and are freed, connections close their handles, the
 *   uv_timer closes; when the last handle has called back, the client is freed and closed(arg)
 *   runs. Invariant: the client is freed exactly once, after every connection.
 */
#include "client/client_int.h"

#include "client/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- time and randomness ------------------------------------------------------------------- */

/* The loop's cached time (uv_now), not common/clock.h: the client's timers and deadlines are kept
 * in the loop's time and compared with the due times of its timer heap. Inside a callback it is
 * the time of the current loop turn, which is what the loop's own paths want. */
uint64_t pc__now_ms(const pc_client *c)
{
    return uv_now(c->loop);
}

/* The same clock brought up to date first (uv_update_time, one clock read), for the calls an
 * application makes (pc_send, creating a producer or consumer): it may call them after blocking
 * outside the loop, and a send stamped with the time of the loop's last turn would time out
 * early. */
uint64_t pc__call_now_ms(pc_client *c)
{
    uv_update_time(c->loop);
    return uv_now(c->loop);
}

uint64_t pc__random(pc_client *c)
{
    /* xorshift64*: enough for jitter and random names. */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t pc__next_request_id(pc_client *c)
{
    return c->next_request_id++;
}

uint32_t pc__backoff_next(pc_client *c, uint32_t *backoff_ms)
{
    uint32_t base = *backoff_ms < PC_BACKOFF_MS_MIN ? PC_BACKOFF_MS_MIN : *backoff_ms;
    uint32_t jitter = (uint32_t)(pc__random(c) % (base / 10 + 1));
    *backoff_ms = base >= PC_BACKOFF_MS_MAX / 2 ? PC_BACKOFF_MS_MAX : base * 2;
    return base + jitter;
}

/* ---- timer heap -------------------------------------------------------------------------------
 */

static void heap_swap(pc_client *c, uint32_t i, uint32_t j)
{
    pc__timer *t = c->heap[i];
    c->heap[i] = c->heap[j];
    c->heap[j] = t;
    c->heap[i]->heap_index = i;
    c->heap[j]->heap_index = j;
}

static void heap_up(pc_client *c, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (c->heap[parent]->due_ms <= c->heap[i]->due_ms)
            break;
        heap_swap(c, i, parent);
        i = parent;
    }
}

static void heap_down(pc_client *c, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->heap_count && c->heap[l]->due_ms < c->heap[m]->due_ms)
            m = l;
        if (r < c->heap_count && c->heap[r]->due_ms < c->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(c, i, m);
        i = m;
    }
}

static void heap_remove(pc_client *c, pc__timer *t)
{
    uint32_t i = t->heap_index;
    MG_ASSERT(i < c->heap_count && c->heap[i] == t);
    uint32_t last = --c->heap_count;
    if (i != last) {
        c->heap[i] = c->heap[last];
        c->heap[i]->heap_index = i;
        heap_down(c, i);
        heap_up(c, i);
    }
    t->heap_index = UINT32_MAX;
}

static void uv_timer_fired(uv_timer_t *h);

static void timer_rearm(pc_client *c)
{
    if (!c->uv_timer_open)
        return;
    if (c->heap_count == 0) {
        uv_timer_stop(&c->uv_timer);
        return;
    }
    uint64_t now = pc__now_ms(c);
    uint64_t due = c->heap[0]->due_ms;
    uv_timer_start(&c->uv_timer, uv_timer_fired, due > now ? due - now : 0, 0);
}

int pc__timer_register(pc_client *c, pc__timer *t, void (*cb)(pc__timer *t))
{
    MG_ASSERT(!t->registered);
    if (c->timers_registered + 1 > c->heap_cap) {
        uint32_t ncap = c->heap_cap < 16 ? 16 : c->heap_cap * 2;
        pc__timer **nh = mg_realloc(c->heap, (size_t)ncap * sizeof(*nh));
        if (nh == NULL)
            return MG_ENOMEM;
        c->heap = nh;
        c->heap_cap = ncap;
    }
    c->timers_registered++;
    t->registered = true;
    t->heap_index = UINT32_MAX;
    t->due_ms = 0;
    t->cb = cb;
    return MG_OK;
}

void pc__timer_unregister(pc_client *c, pc__timer *t)
{
    if (!t->registered)
        return;
    pc__timer_stop(c, t);
    t->registered = false;
    c->timers_registered--;
}

void pc__timer_stop(pc_client *c, pc__timer *t)
{
    if (t->heap_index == UINT32_MAX)
        return;
    bool was_top = t->heap_index == 0;
    heap_remove(c, t);
    if (was_top)
        timer_rearm(c);
}

static void timer_arm_at(pc_client *c, pc__timer *t, uint64_t due_ms)
{
    MG_ASSERT(t->registered);
    if (t->heap_index != UINT32_MAX)
        heap_remove(c, t);
    t->due_ms = due_ms;
    MG_ASSERT(c->heap_count < c->heap_cap);
    t->heap_index = c->heap_count;
    c->heap[c->heap_count++] = t;
    heap_up(c, t->heap_index);
    timer_rearm(c);
}

void pc__timer_start(pc_client *c, pc__timer *t, uint64_t delay_ms)
{
    timer_arm_at(c, t, pc__now_ms(c) + delay_ms);
}

void pc__timer_start_by(pc_client *c, pc__timer *t, uint64_t due_ms)
{
    if (t->heap_index != UINT32_MAX && t->due_ms <= due_ms)
        return;
    timer_arm_at(c, t, due_ms);
}

static void uv_timer_fired(uv_timer_t *h)
{
    pc_client *c = h->data;
    uint64_t now = pc__now_ms(c);
    uint32_t budget = c->heap_count + 16;
    while (c->heap_count > 0 && budget-- > 0) {
        pc__timer *t = c->heap[0];
        if (t->due_ms > now)
            break;
        heap_remove(c, t);
        t->cb(t);
    }
    timer_rearm(c);
}

/* ---- housekeeping -----------------------------------------------------------------------------
 */

static void housekeeping_fired(pc__timer *t)
{
    pc_client *c = MG_CONTAINER_OF(t, pc_client, housekeeping);
    uint64_t now = pc__now_ms(c);
    for (mg_link *l = c->conns.next; l != &c->conns;) {
        pc__conn *conn = MG_CONTAINER_OF(l, pc__conn, link);
        l = l->next;
        pc__conn_housekeeping(conn, now);
    }
    pc__producers_housekeeping(c, now);
    pc__housekeeping_arm(c);
}

void pc__housekeeping_arm(pc_client *c)
{
    if (c->closing || pc__timer_armed(&c->housekeeping))
        return;
    if (mg_list_empty(&c->conns) && !pc__producers_any(c))
        return;
    pc__timer_start(c, &c->housekeeping, PC_HOUSEKEEPING_MS);
}

/* ---- id map -------------------------------------------------------------------------------------
 */

static size_t id_slot(uint64_t id, size_t cap)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static int idmap_grow(pc_client *c)
{
    size_t ncap = c->idmap_cap == 0 ? 64 : c->idmap_cap * 2;
    pc__part **ns = mg_calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < c->idmap_cap; i++) {
        pc__part *p = c->idmap[i];
        if (p == NULL)
            continue;
        size_t j = id_slot(p->id, ncap);
        while (ns[j] != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = p;
    }
    mg_free(c->idmap);
    c->idmap = ns;
    c->idmap_cap = ncap;
    return MG_OK;
}

int pc__idmap_put(pc_client *c, pc__part *p)
{
    if (c->idmap_count >= PC_HANDLES_MAX)
        return MG_ELIMIT;
    if ((c->idmap_count + 1) * 4 > c->idmap_cap * 3)
        MG_TRY(idmap_grow(c));
    size_t i = id_slot(p->id, c->idmap_cap);
    while (c->idmap[i] != NULL)
        i = (i + 1) & (c->idmap_cap - 1);
    c->idmap[i] = p;
    c->idmap_count++;
    return MG_OK;
}

pc__part *pc__idmap_get(pc_client *c, uint64_t id)
{
    if (c->idmap_cap == 0)
        return NULL;
    size_t i = id_slot(id, c->idmap_cap);
    while (c->idmap[i] != NULL) {
        if (c->idmap[i]->id == id)
            return c->idmap[i];
        i = (i + 1) & (c->idmap_cap - 1);
    }
    return NULL;
}

void pc__idmap_del(pc_client *c, pc__part *p)
{
    if (c->idmap_cap == 0)
        return;
    size_t mask = c->idmap_cap - 1;
    size_t i = id_slot(p->id, c->idmap_cap);
    while (c->idmap[i] != NULL && c->idmap[i] != p)
        i = (i + 1) & mask;
    if (c->idmap[i] == NULL)
        return;
    c->idmap[i] = NULL;
    c->idmap_count--;
    /* Backward shift: move later members of the probe run into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (c->idmap[j] == NULL)
            break;
        size_t home = id_slot(c->idmap[j]->id, c->idmap_cap);
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            c->idmap[i] = c->idmap[j];
            c->idmap[j] = NULL;
            i = j;
        }
    }
}

/* ---- service URL ------------------------------------------------------------------------------
 */

/* Checks "host:port" (host a name, an IPv4 address or [IPv6]; port 1..65535). */
static bool addr_valid(const char *s, size_t n)
{
    if (n == 0 || n > PC_ADDR_BYTES_MAX)
        return false;
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (colon == NULL || colon == s)
        return false;
    size_t port_len = (size_t)(s + n - colon - 1);
    if (port_len == 0 || port_len > 5)
        return false;
    unsigned port = 0;
    for (size_t i = 0; i < port_len; i++) {
        char ch = colon[1 + i];
        if (ch < '0' || ch > '9')
            return false;
        port = port * 10 + (unsigned)(ch - '0');
    }
    if (port == 0 || port > 65535)
        return false;
    for (const char *p = s; p < colon; p++)
        if (*p == '/' || *p == ' ' || *p == ',')
            return false;
    return true;
}

int pc__parse_broker_url(const char *url, char *dst, size_t cap)
{
    static const char scheme[] = "pulsar://";
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return MG_EINVAL;
    const char *a = url + sizeof(scheme) - 1;
    size_t n = strlen(a);
    while (n > 0 && a[n - 1] == '/')
        n--;
    if (!addr_valid(a, n) || n >= cap)
        return MG_EINVAL;
    memcpy(dst, a, n);
    dst[n] = '\0';
    return MG_OK;
}

static int parse_service_url(pc_client *c, const char *url)
{
    static const char scheme[] = "pulsar://";
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return MG_EINVAL;
    const char *p = url + sizeof(scheme) - 1;
    c->service_count = 0;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        while (n > 0 && p[n - 1] == '/')
            n--;
        if (!addr_valid(p, n) || c->service_count >= PC_SERVICE_HOSTS_MAX)
            return MG_EINVAL;
        memcpy(c->service[c->service_count], p, n);
        c->service[c->service_count][n] = '\0';
        c->service_count++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return c->service_count > 0 ? MG_OK : MG_EINVAL;
}

const char *pc__service_addr(pc_client *c)
{
    return c->service[c->service_next % c->service_count];
}

void pc__service_failed(pc_client *c, const char *addr)
{
    if (strcmp(addr, pc__service_addr(c)) == 0)
        c->service_next = (c->service_next + 1) % c->service_count;
}

/* ---- client -------------------------------------------------------------------------------------
 */

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *d = mg_malloc(n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

static void client_free(pc_client *c)
{
    mg_free(c->heap);
    mg_free(c->idmap);
    mg_free(c->auth_method_name);
    mg_free(c->auth_data);
    mg_free(c->client_version);
    mg_free(c);
}

static void close_fired(pc__timer *t);

int pc_client_create(uv_loop_t *loop, const pc_client_opts *opts, pc_client **out)
{
    if (loop == NULL || opts == NULL || out == NULL)
        return MG_EINVAL;
    pc_client *c = mg_calloc(1, sizeof(*c));
    if (c == NULL)
        return MG_ENOMEM;
    c->loop = loop;
    mg_list_init(&c->conns);
    mg_list_init(&c->producers);
    mg_list_init(&c->consumers);
    int rc = parse_service_url(c, opts->service_url);
    if (rc != MG_OK) {
        client_free(c);
        return rc;
    }
    c->op_timeout_ms = opts->operation_timeout_ms != 0 ? opts->operation_timeout_ms : 30000;
    c->keepalive_ms = (opts->keepalive_s != 0 ? opts->keepalive_s : 30) * 1000u;
    c->next_id = 1;
    c->next_request_id = 1;
    c->rng = (uint64_t)mg_clock_wall_ms() ^ ((uint64_t)(uintptr_t)c << 16) ^ uv_hrtime();
    if (c->rng == 0)
        c->rng = 0x9E3779B97F4A7C15ull;
    char version[64];
    snprintf(version, sizeof(version), "magnetar-c %s", MG_VERSION);
    c->client_version = dup_or_null(opts->client_version != NULL ? opts->client_version : version);
    c->auth_method_name = dup_or_null(opts->auth_method_name);
    c->auth_data = dup_or_null(opts->auth_data);
    if (c->client_version == NULL || (opts->auth_method_name != NULL && !c->auth_method_name) ||
        (opts->auth_data != NULL && c->auth_data == NULL) ||
        pc__timer_register(c, &c->housekeeping, housekeeping_fired) != MG_OK ||
        pc__timer_register(c, &c->close_timer, close_fired) != MG_OK) {
        client_free(c);
        return MG_ENOMEM;
    }
    rc = uv_timer_init(loop, &c->uv_timer);
    if (rc != 0) {
        client_free(c);
        return mg_err_from_uv(rc);
    }
    c->uv_timer.data = c;
    c->uv_timer_open = true;
    c->handles_open = 1;
    *out = c;
    return MG_OK;
}

const char *pc_last_error(const pc_client *c)
{
    return c->last_error;
}

void pc__set_last_error(pc_client *c, const char *text)
{
    snprintf(c->last_error, sizeof(c->last_error), "%s", text != NULL ? text : "");
}

void pc__client_maybe_freed(pc_client *c)
{
    if (!c->closing || c->closed_done || c->uv_timer_open || c->handles_open > 0 ||
        !mg_list_empty(&c->conns))
        return;
    c->closed_done = true;
    void (*cb)(void *) = c->closed_cb;
    void *arg = c->closed_arg;
    client_free(c);
    if (cb != NULL)
        cb(arg);
}

static void uv_timer_closed(uv_handle_t *h)
{
    pc_client *c = h->data;
    c->handles_open--;
    pc__client_maybe_freed(c);
}

static void close_fired(pc__timer *t)
{
    pc_client *c = MG_CONTAINER_OF(t, pc_client, close_timer);
    pc__handles_abort(&c->producers);
    pc__handles_abort(&c->consumers);
    for (mg_link *l = c->conns.next; l != &c->conns;) {
        pc__conn *conn = MG_CONTAINER_OF(l, pc__conn, link);
        l = l->next;
        pc__conn_abort(conn);
    }
    pc__timer_unregister(c, &c->housekeeping);
    uv_timer_stop(&c->uv_timer);
    c->uv_timer_open = false;
    uv_close((uv_handle_t *)&c->uv_timer, uv_timer_closed);
}

void pc_client_close(pc_client *c, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!c->closing);
    c->closing = true;
    c->closed_cb = closed;
    c->closed_arg = arg;
    pc__timer_stop(c, &c->housekeeping);
    pc__timer_start(c, &c->close_timer, 0);
}

/* ---- message ids --------------------------------------------------------------------------------
 */

int pc_message_id_cmp(const pc_message_id *a, const pc_message_id *b)
{
    if (a->ledger_id != b->ledger_id)
        return a->ledger_id < b->ledger_id ? -1 : 1;
    if (a->entry_id != b->entry_id)
        return a->entry_id < b->entry_id ? -1 : 1;
    if (a->batch_index != b->batch_index)
        return a->batch_index < b->batch_index ? -1 : 1;
    return 0;
}

void pc_message_id_format(const pc_message_id *id, char *dst, size_t cap)
{
    if (cap == 0)
        return;
    snprintf(dst, cap, "%lld:%lld:%d:%d", (long long)id->ledger_id, (long long)id->entry_id,
             (int)id->partition, (int)id->batch_index);
}

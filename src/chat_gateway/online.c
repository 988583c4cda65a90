/*
 * The chat gateway in the metadata store: its registration, which Job workers follow, and the
 * online counts of its rooms, which the HTTP API (/goim/online/...) and the other gateways read
 * (docs/chat_gateway.md "Metadata").
 *
 *   /chat/gateways/<id>   ephemeral, {"id","push","tcp","ws"}: written once at start, deleted at
 *                         a clean stop (an ephemeral node also goes with the process's session)
 *   /chat/online/<id>     ephemeral, {"id","updated_ms","conn_count","ip_count","rooms":{...}}:
 *                         rewritten every online_interval_ms, as GOIM's comet reports its rooms'
 *                         counts to its logic service every 10 s
 *
 * A heartbeat is answered with the room's count across gateways: this gateway's members now,
 * plus the other gateways' counts from their last reports (read at the same interval), so the
 * figure a client sees is at most one interval stale for the other gateways' part.
 *
 * Every metadata request in flight counts in gw->side_pending, so the gateway outlives the
 * callbacks. A failed write is logged (rate-limited) and done again at the next interval.
 */
#include "chat_gateway/gateway_int.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/metadata.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cg__online {
    cg_gateway *gw;
    uv_timer_t timer;
    bool timer_open;
    bool registered;  /* /chat/gateways/<id> exists */
    bool registering; /* its md_create is in flight */
    bool online_made; /* /chat/online/<id> exists */
    bool writing;     /* a write of /chat/online/<id> is in flight */
    bool reading;     /* the other gateways' reports are being read */
    json_t *remote;   /* room -> count, summed over the other gateways */
    json_t *building; /* the sum being read */
    uint32_t reads_left;
    char gw_path[256];
    char online_path[256];
} cg__online;

static cg__online *on_of(cg_gateway *gw)
{
    return gw->online;
}

static void side_done(cg_gateway *gw)
{
    MG_ASSERT(gw->side_pending > 0);
    gw->side_pending--;
    cg__gateway_maybe_closed(gw);
}

/* ---- registration ------------------------------------------------------------------------- */

static void registered(int status, const char *path, void *arg)
{
    (void)path;
    cg_gateway *gw = arg;
    cg__online *o = on_of(gw);
    if (o != NULL) {
        o->registering = false;
        if (status == MG_OK) {
            o->registered = true;
            MG_INFO("chat gateway %s: registered at %s", gw->id, o->gw_path);
        } else {
            MG_WARN_LIMITED("chat gateway %s: cannot register at %s: %s (retrying)", gw->id,
                            o->gw_path, mg_strerror(status));
        }
    }
    side_done(gw);
}

static void do_register(cg_gateway *gw)
{
    cg__online *o = on_of(gw);
    char push[96], tcp[96], ws[96];
    snprintf(push, sizeof(push), "%s:%u", gw->advertised, (unsigned)gw->ports[2]);
    snprintf(tcp, sizeof(tcp), "%s:%u", gw->advertised, (unsigned)gw->ports[0]);
    snprintf(ws, sizeof(ws), "%s:%u", gw->advertised, (unsigned)gw->ports[1]);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s}", "id", gw->id, "push", push, "tcp", tcp, "ws", ws);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text == NULL)
        return; /* out of memory: tried again at the next interval */
    if (md_create(gw->mdc, o->gw_path, text, strlen(text), MD_EPHEMERAL | MD_CREATE_PARENTS,
                  registered, gw) == MG_OK) {
        o->registering = true;
        gw->side_pending++;
    }
    free(text);
}

/* ---- the report ---------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct room_count {
    const char *name;
    uint32_t count;
} room_count;

static int cmp_count_desc(const void *a, const void *b)
{
    const room_count *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

/* The report's JSON text (the caller frees it), or NULL. */
static char *build_report(cg_gateway *gw)
{
    uint32_t *ips = gw->conn_count ? mg_malloc(gw->conn_count * sizeof(uint32_t)) : NULL;
    room_count *rooms = gw->room_count ? mg_malloc(gw->room_count * sizeof(room_count)) : NULL;
    json_t *root = json_object();
    json_t *jr = json_object();
    char *text = NULL;
    if ((gw->conn_count && ips == NULL) || (gw->room_count && rooms == NULL) || root == NULL ||
        jr == NULL)
        goto out;
    size_t nip = 0;
    for (uint32_t b = 0; b < gw->bucket_count; b++) {
        mg_link *l = gw->buckets[b].conns.next;
        for (uint32_t i = 0; l != &gw->buckets[b].conns && nip < gw->conn_count; i++) {
            ips[nip++] = MG_CONTAINER_OF(l, cg__conn, bucket_link)->ip4;
            l = l->next;
        }
    }
    if (nip > 1)
        qsort(ips, nip, sizeof(uint32_t), cmp_u32);
    size_t ip_count = 0;
    for (size_t i = 0; i < nip; i++)
        if (i == 0 || ips[i] != ips[i - 1])
            ip_count++;
    size_t nr = 0;
    for (uint32_t i = 0; i < gw->room_cap; i++)
        for (cg__room *r = gw->room_table[i]; r != NULL; r = r->hnext)
            if (r->count > 0 && nr < gw->room_count)
                rooms[nr++] = (room_count){ r->name, r->count };
    if (nr > CG_ONLINE_ROOMS_MAX) {
        qsort(rooms, nr, sizeof(room_count), cmp_count_desc);
        nr = CG_ONLINE_ROOMS_MAX;
    }
    for (size_t i = 0; i < nr; i++)
        json_object_set_new(jr, rooms[i].name, json_integer(rooms[i].count));
    json_object_set_new(root, "id", json_string(gw->id));
    json_object_set_new(root, "updated_ms", json_integer(mg_clock_wall_ms()));
    json_object_set_new(root, "conn_count", json_integer(gw->live_count));
    json_object_set_new(root, "ip_count", json_integer((json_int_t)ip_count));
    json_object_set(root, "rooms", jr);
    text = json_dumps(root, JSON_COMPACT);
out:
    json_decref(jr);
    json_decref(root);
    mg_free(ips);
    mg_free(rooms);
    return text;
}

static void write_done_common(cg_gateway *gw, int status)
{
    cg__online *o = on_of(gw);
    if (o != NULL) {
        o->writing = false;
        if (status == MG_OK)
            o->online_made = true;
        else if (status == MG_ENOTFOUND)
            o->online_made = false; /* made again at the next interval */
        else
            MG_WARN_LIMITED("chat gateway %s: cannot write %s: %s", gw->id, o->online_path,
                            mg_strerror(status));
    }
    side_done(gw);
}

static void online_created(int status, const char *path, void *arg)
{
    (void)path;
    write_done_common(arg, status);
}

static void online_set(int status, const md_stat *stat, void *arg)
{
    (void)stat;
    write_done_common(arg, status);
}

static void write_report(cg_gateway *gw)
{
    cg__online *o = on_of(gw);
    if (o->writing)
        return;
    char *text = build_report(gw);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    int rc = o->online_made
                 ? md_set(gw->mdc, o->online_path, text, len, MD_VERSION_ANY, online_set, gw)
                 : md_create(gw->mdc, o->online_path, text, len, MD_EPHEMERAL | MD_CREATE_PARENTS,
                             online_created, gw);
    free(text);
    if (rc == MG_OK) {
        o->writing = true;
        gw->side_pending++;
    }
}

/* ---- the other gateways' reports ------------------------------------------------------------ */

static void read_finish(cg__online *o)
{
    json_decref(o->remote);
    o->remote = o->building;
    o->building = NULL;
    o->reading = false;
}

static void report_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    cg_gateway *gw = arg;
    cg__online *o = on_of(gw);
    if (o != NULL && o->building != NULL) {
        if (status == MG_OK) {
            json_t *v = json_loadb(value, len, JSON_REJECT_DUPLICATES, NULL);
            json_t *rooms = v ? json_object_get(v, "rooms") : NULL;
            json_t *when = v ? json_object_get(v, "updated_ms") : NULL;
            int64_t age = when ? mg_clock_wall_ms() - (int64_t)json_integer_value(when) : 0;
            if (json_is_object(rooms) && age < 3 * (int64_t)gw->online_interval_ms) {
                const char *name;
                json_t *cnt;
                json_object_foreach(rooms, name, cnt)
                {
                    json_t *have = json_object_get(o->building, name);
                    json_int_t sum =
                        json_integer_value(cnt) + (have ? json_integer_value(have) : 0);
                    json_object_set_new(o->building, name, json_integer(sum));
                }
            }
            json_decref(v);
        }
        if (--o->reads_left == 0)
            read_finish(o);
    }
    side_done(gw);
}

static void reports_listed(int status, const char *const *names, size_t count, void *arg)
{
    cg_gateway *gw = arg;
    cg__online *o = on_of(gw);
    if (o != NULL && o->reading) {
        o->building = json_object();
        o->reads_left = 1; /* this function's own share, dropped below */
        /* As many gateways as the online API sums (its bound), each report bounded in rooms. */
        for (size_t i = 0;
             status == MG_OK && o->building && i < count && i < CG_API_ONLINE_GATEWAYS_MAX; i++) {
            if (strcmp(names[i], gw->id) == 0)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "/chat/online/%s", names[i]);
            if (md_get(gw->mdc, path, report_got, gw) == MG_OK) {
                o->reads_left++;
                gw->side_pending++;
            }
        }
        if (o->building == NULL)
            o->reading = false;
        else if (--o->reads_left == 0)
            read_finish(o);
    }
    side_done(gw);
}

static void read_reports(cg_gateway *gw)
{
    cg__online *o = on_of(gw);
    if (o->reading)
        return;
    if (md_children(gw->mdc, "/chat/online", reports_listed, gw) == MG_OK) {
        o->reading = true;
        gw->side_pending++;
    }
}

uint32_t cg__online_remote(cg_gateway *gw, const char *room)
{
    cg__online *o = on_of(gw);
    if (o == NULL || o->remote == NULL)
        return 0;
    json_t *v = json_object_get(o->remote, room);
    json_int_t n = v ? json_integer_value(v) : 0;
    return n > 0 && n < UINT32_MAX ? (uint32_t)n : 0;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    cg_gateway *gw = t->data;
    cg__online *o = on_of(gw);
    if (!o->registered && !o->registering)
        do_register(gw); /* again: e.g. the node of a previous run whose session has not expired */
    write_report(gw);
    read_reports(gw);
}

int cg__online_start(cg_gateway *gw)
{
    if (gw->mdc == NULL)
        return MG_OK;
    cg__online *o = mg_calloc(1, sizeof(*o));
    if (o == NULL)
        return MG_ENOMEM;
    o->gw = gw;
    snprintf(o->gw_path, sizeof(o->gw_path), "/chat/gateways/%s", gw->id);
    snprintf(o->online_path, sizeof(o->online_path), "/chat/online/%s", gw->id);
    gw->online = o;
    uv_timer_init(gw->loop, &o->timer);
    o->timer.data = gw;
    o->timer_open = true;
    gw->handles_open++;
    do_register(gw);
    write_report(gw);
    uv_timer_start(&o->timer, on_tick, gw->online_interval_ms, gw->online_interval_ms);
    return MG_OK;
}

static void timer_closed(uv_handle_t *h)
{
    cg_gateway *gw = h->data;
    cg__online *o = gw->online;
    gw->online = NULL;
    json_decref(o->remote);
    json_decref(o->building);
    mg_free(o);
    gw->handles_open--;
    cg__gateway_maybe_closed(gw);
}

static void deleted(int status, void *arg)
{
    (void)status;
    side_done(arg);
}

void cg__online_stop(cg_gateway *gw)
{
    cg__online *o = on_of(gw);
    if (o == NULL)
        return;
    /* Jobs drop this gateway at once rather than when its session expires. */
    if (o->registered && md_delete(gw->mdc, o->gw_path, MD_VERSION_ANY, deleted, gw) == MG_OK)
        gw->side_pending++;
    if (o->online_made && md_delete(gw->mdc, o->online_path, MD_VERSION_ANY, deleted, gw) == MG_OK)
        gw->side_pending++;
    uv_close((uv_handle_t *)&o->timer, timer_closed);
}

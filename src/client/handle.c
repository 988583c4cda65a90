/*
 * The life cycle every pc_producer and pc_consumer shares (the state diagram is in
 * client_int.h), on the pc__handle each begins with; what differs comes from its
 * pc__handle_ops.
 *
 * CREATION: PARTITIONED_METADATA first (a failure is retried with pc__backoff_next from
 * PC_BACKOFF_MS_MIN until operation_timeout_ms, unless fatal), then one part per partition (one
 * for a topic that is not partitioned), each started with the handle's creation deadline. The
 * handle is READY when every part registered once; the first part that fails for good fails the
 * creation, and the parts already registered are released (CLOSE_* sent, answer ignored).
 *
 * CLOSE: CLOSE_PRODUCER / CLOSE_CONSUMER goes to every READY part (the others stop); once every
 * answer came (or its part left its connection) the handle dies. Death is deferred to a
 * zero-delay timer, so whatever called in (an answer, the application) returns first (rule 2
 * of client_int.h).
 */
#include "client/client_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <stdio.h>

static void handle_fail_creation(pc__handle *h, int status)
{
    h->create_reported = true;
    pc__handle_kill(h, status);
    h->ops->report_created(h, status);
}

static int handle_make_parts(pc__handle *h, uint32_t partitions)
{
    uint32_t n = partitions == 0 ? 1 : partitions;
    h->parts = mg_calloc(n, sizeof(*h->parts));
    if (h->parts == NULL)
        return MG_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        pc__part *part;
        MG_TRY(pc__part_new(h->c, h->ops->part_size, h->ops->part_kind, h->ops->part_ops, h->topic,
                            partitions, i, &part));
        part->handle = h;
        h->parts[i] = part;
        h->nparts = i + 1;
        MG_TRY(h->ops->part_setup(h, part));
    }
    return MG_OK;
}

static void meta_done(pc__lookup *l, int status, bool fatal)
{
    pc__handle *h = MG_CONTAINER_OF(l, pc__handle, meta);
    if (h->state != PC__HANDLE_META)
        return;
    if (status != MG_OK) {
        if (fatal || pc__now_ms(h->c) >= h->create_deadline_ms) {
            handle_fail_creation(h, status);
            return;
        }
        pc__timer_start(h->c, &h->timer, pc__backoff_next(h->c, &h->meta_backoff_ms));
        return;
    }
    int rc = handle_make_parts(h, l->partitions);
    if (rc != MG_OK) {
        handle_fail_creation(h, rc);
        return;
    }
    h->state = PC__HANDLE_CREATING;
    for (uint32_t i = 0; i < h->nparts; i++) {
        pc__part_start(h->parts[i]);
        h->parts[i]->create_deadline_ms = h->create_deadline_ms;
    }
}

static void handle_timer_fired(pc__timer *t)
{
    pc__handle *h = MG_CONTAINER_OF(t, pc__handle, timer);
    if (h->state == PC__HANDLE_META) {
        int rc = pc__lookup_start(&h->meta, h->topic);
        if (rc != MG_OK)
            meta_done(&h->meta, rc, rc == MG_EINVAL || rc == MG_ECLOSED);
        return;
    }
    if (h->state == PC__HANDLE_DEAD)
        h->ops->dead(h);
}

int pc__handle_check(pc_client *c, const char *topic, pw_topic_name *tn)
{
    if (c->closing)
        return MG_ECLOSED;
    char err[128];
    if (pw_topic_name_parse(topic, tn, err, sizeof(err)) != MG_OK) {
        pc__set_last_error(c, err);
        return MG_EINVAL;
    }
    return MG_OK;
}

int pc__handle_start(pc__handle *h, pc_client *c, const pc__handle_ops *ops, const char *topic,
                     mg_link *list)
{
    h->c = c;
    h->ops = ops;
    snprintf(h->topic, sizeof(h->topic), "%s", topic);
    h->meta_backoff_ms = PC_BACKOFF_MS_MIN;
    pc__lookup_init(&h->meta, c, true, meta_done);
    MG_TRY(pc__timer_register(c, &h->timer, handle_timer_fired));
    mg_list_push(list, &h->link);
    h->state = PC__HANDLE_META;
    h->create_deadline_ms = pc__call_now_ms(c) + c->op_timeout_ms;
    pc__timer_start(c, &h->timer, 0);
    return MG_OK;
}

void pc__handle_free(pc__handle *h)
{
    for (uint32_t i = 0; i < h->nparts; i++)
        if (h->parts[i] != NULL)
            h->ops->part_free(h->parts[i]);
    mg_free(h->parts);
    pc__lookup_cancel(&h->meta);
    pc__timer_unregister(h->c, &h->timer);
    mg_list_remove(&h->link);
    mg_free(h);
}

static void handle_stop_parts(pc__handle *h, bool release)
{
    pc__lookup_cancel(&h->meta);
    for (uint32_t i = 0; i < h->nparts; i++)
        if (h->parts[i] != NULL)
            h->ops->part_stop(h->parts[i], release);
}

void pc__handle_kill(pc__handle *h, int status)
{
    h->state = PC__HANDLE_DEAD;
    h->final_status = status;
    handle_stop_parts(h, true);
    pc__timer_start(h->c, &h->timer, 0);
}

void pc__handle_part_created(pc__part *part, int status)
{
    pc__handle *h = part->handle;
    if (h->state != PC__HANDLE_CREATING || h->create_reported)
        return;
    if (status != MG_OK) {
        handle_fail_creation(h, status);
        return;
    }
    if (++h->parts_created < h->nparts)
        return;
    h->state = PC__HANDLE_READY;
    h->create_reported = true;
    h->ops->report_created(h, MG_OK);
}

static void close_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    (void)status;
    (void)cmd;
    pc__part *part = r->arg;
    pc__handle *h = part->handle;
    part->close_req = NULL;
    pc__part_stop(part);
    MG_ASSERT(h->close_waiting > 0);
    if (--h->close_waiting == 0)
        h->ops->closed(h);
}

void pc__handle_close_parts(pc__handle *h)
{
    h->close_waiting = 0;
    for (uint32_t i = 0; i < h->nparts; i++) {
        pc__part *part = h->parts[i];
        if (h->ops->part_closing != NULL)
            h->ops->part_closing(part);
        if (part->state != PC__PART_READY) {
            pc__part_stop(part);
            continue;
        }
        if (pc__part_close_request(part, close_answered, part, &part->close_req) == MG_OK)
            h->close_waiting++;
        else
            pc__part_stop(part);
    }
    if (h->close_waiting == 0)
        h->ops->closed(h);
}

void pc__handles_abort(mg_link *list)
{
    while (!mg_list_empty(list)) {
        pc__handle *h = MG_CONTAINER_OF(list->next, pc__handle, link);
        bool report_create = !h->create_reported;
        h->create_reported = true;
        pc__handle_state was = h->state;
        h->state = PC__HANDLE_DEAD;
        handle_stop_parts(h, false);
        if (report_create && was != PC__HANDLE_DEAD)
            h->ops->report_created(h, MG_ECLOSED);
        h->ops->aborted(h, was);
    }
}

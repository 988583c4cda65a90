/*
 * replay_seed: produces the messages test_replay.sh replays, with what `magnetar client produce`
 * cannot give them: event times, binary payloads and batches of a chosen size.
 *
 *   replay_seed URL TOPIC COUNT [--first I] [--batch N] [--binary-every K] [--prefix P]
 *
 * Message i (i = I .. I + COUNT - 1) has the payload "P-i" (or, when K > 0 and i % K == 0, the
 * four bytes ff 00 fe (i & 0xff), which are not UTF-8), the key "k<i % 3>", the properties
 * seq=i and src=seed, and the event time 1700000000000 + i. With --batch N the messages go in
 * batches of N. Exits 0 once every message is acknowledged, 1 otherwise (bounded: 30 s).
 */
#include "client/client.h"
#include "common/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct seed {
    uv_loop_t loop;
    uv_timer_t timeout;
    pc_client *client;
    pc_producer *producer;
    int64_t first, count, batch, binary_every, acked, failed;
    const char *prefix;
    int status;
} seed;

static void client_closed(void *arg)
{
    seed *s = arg;
    uv_close((uv_handle_t *)&s->timeout, NULL);
}

static void producer_closed(int status, void *arg)
{
    (void)status;
    seed *s = arg;
    pc_client_close(s->client, client_closed, s);
}

static void finish(seed *s, int status)
{
    s->status = status;
    uv_timer_stop(&s->timeout);
    if (s->producer != NULL) {
        pc_producer *p = s->producer;
        s->producer = NULL;
        pc_producer_close(p, producer_closed, s);
    } else {
        pc_client_close(s->client, client_closed, s);
    }
}

static void sent(int status, const pc_message_id *id, void *arg)
{
    (void)id;
    seed *s = arg;
    if (status == MG_OK)
        s->acked++;
    else if (s->failed++ == 0)
        fprintf(stderr, "replay_seed: a send failed: %s\n", mg_strerror(status));
    if (s->acked + s->failed == s->count && s->producer != NULL)
        finish(s, s->failed == 0 ? 0 : 1);
}

static void created(int status, pc_producer *p, void *arg)
{
    seed *s = arg;
    if (status != MG_OK) {
        fprintf(stderr, "replay_seed: cannot create the producer: %s\n", mg_strerror(status));
        finish(s, 1);
        return;
    }
    s->producer = p;
    for (int64_t i = s->first; i < s->first + s->count; i++) {
        char text[64], seq[32], key[8];
        uint8_t bin[4] = { 0xff, 0x00, 0xfe, (uint8_t)(0x80 | (i & 0x7f)) };
        snprintf(text, sizeof(text), "%s-%" PRId64, s->prefix, i);
        snprintf(seq, sizeof(seq), "%" PRId64, i);
        snprintf(key, sizeof(key), "k%d", (int)(i % 3));
        bool binary = s->binary_every > 0 && i % s->binary_every == 0;
        pc_property props[2] = { { "seq", seq }, { "src", "seed" } };
        pc_message m = {
            .payload = binary ? (const void *)bin : (const void *)text,
            .payload_len = binary ? sizeof(bin) : strlen(text),
            .key = key,
            .properties = props,
            .property_count = 2,
            .event_time_ms = 1700000000000 + i,
        };
        int rc = pc_send(p, &m, sent, s);
        if (rc != MG_OK) {
            fprintf(stderr, "replay_seed: cannot send: %s\n", mg_strerror(rc));
            finish(s, 1);
            return;
        }
    }
    pc_producer_flush(p);
}

static void timed_out(uv_timer_t *t)
{
    seed *s = t->data;
    fprintf(stderr, "replay_seed: %" PRId64 " of %" PRId64 " acknowledged after 30 s\n", s->acked,
            s->count);
    finish(s, 1);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: replay_seed URL TOPIC COUNT [--first I] [--batch N] "
                        "[--binary-every K] [--prefix P]\n");
        return 2;
    }
    static seed s;
    s.count = atoll(argv[3]);
    s.prefix = "m";
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--first") == 0)
            s.first = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            s.batch = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--binary-every") == 0)
            s.binary_every = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--prefix") == 0)
            s.prefix = argv[i + 1];
        else {
            fprintf(stderr, "replay_seed: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (s.count < 1 || s.count > s.count + 1000000) {
        fprintf(stderr, "replay_seed: COUNT must be positive\n");
        return 2;
    }
    uv_loop_init(&s.loop);
    uv_timer_init(&s.loop, &s.timeout);
    s.timeout.data = &s;
    pc_client_opts co = { .service_url = argv[1], .operation_timeout_ms = 20000 };
    if (pc_client_create(&s.loop, &co, &s.client) != MG_OK) {
        fprintf(stderr, "replay_seed: bad service URL %s\n", argv[1]);
        return 1;
    }
    pc_producer_opts po = {
        .topic = argv[2],
        .batching = s.batch > 1,
        .batch_max_messages = (uint32_t)(s.batch > 1 ? s.batch : 0),
        .batch_max_delay_ms = 200,
        .max_pending_messages = (uint32_t)(s.count + 16),
    };
    if (pc_producer_create(s.client, &po, created, &s) != MG_OK) {
        fprintf(stderr, "replay_seed: cannot create a producer on %s\n", argv[2]);
        return 1;
    }
    uv_timer_start(&s.timeout, timed_out, 30000, 0);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    if (s.status == 0)
        printf("%" PRId64 " messages produced\n", s.acked);
    return s.status;
}

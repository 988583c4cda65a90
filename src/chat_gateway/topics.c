/*
 * The chat topic naming rule (declared in topics.h, which gives the rule and why).
 */
#include "chat_gateway/topics.h"

#include "common/assert.h"
#include "common/error.h"

#include <stdio.h>
#include <string.h>

/* FNV-1a, 32 bits: the parameters published by Fowler, Noll and Vo. */
#define CG__FNV32_OFFSET_BASIS 0x811c9dc5u
#define CG__FNV32_PRIME        0x01000193u

uint32_t cg_fnv1a32(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = CG__FNV32_OFFSET_BASIS;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= CG__FNV32_PRIME;
    }
    return h;
}

uint32_t cg_chat_topic_index(const char *routing, uint32_t topics)
{
    MG_ASSERT(topics >= 1);
    MG_ASSERT(routing != NULL);
    return cg_fnv1a32(routing, strlen(routing)) % topics;
}

int cg_chat_topic_name(uint32_t index, char *dst, size_t cap)
{
    if (dst == NULL || cap == 0)
        return MG_EINVAL;
    int n = snprintf(dst, cap, "%s%u", CG_CHAT_TOPIC_PREFIX, (unsigned)index);
    if (n < 0 || (size_t)n >= cap) {
        dst[0] = '\0';
        return MG_EINVAL;
    }
    return MG_OK;
}

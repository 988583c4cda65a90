/*
 * Tenants, namespaces and their policies (namespace.c), and the policies' enforcement
 * (policy.c), inside the broker.
 *
 * METADATA (Pulsar's paths and JSON, so an operator's tools and habits carry over)
 *   /admin/policies/<tenant>        TenantInfo: {"adminRoles": [...], "allowedClusters": [...]}
 *   /admin/policies/<tenant>/<ns>   Policies: retention_policies, message_ttl_in_seconds,
 *                                   backlog_quota_map, ...
 *   public/default exists from the start: a broker creates it when missing.
 *
 * The broker keeps every namespace's policies in a cache (namespace.c), read when a topic of
 * the namespace is first opened and kept fresh by metadata watches, so enforcement (policy.c)
 * looks them up synchronously.
 */
#ifndef MG_BROKER_NAMESPACE_H
#define MG_BROKER_NAMESPACE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct br_broker br_broker;
typedef struct br_topic br_topic;

/* A policy value not set on the namespace: the broker's default applies. */
#define BR_POLICY_UNSET INT64_MIN

typedef enum br_backlog_policy {
    BR_BACKLOG_PRODUCER_REQUEST_HOLD = 0, /* producers refused (ProducerBlockedQuotaExceededError)
                                             and disconnected; clients hold their sends */
    BR_BACKLOG_PRODUCER_EXCEPTION = 1,    /* ... ProducerBlockedQuotaExceededException: sends
                                             fail at once */
    BR_BACKLOG_CONSUMER_BACKLOG_EVICTION = 2, /* the slowest subscriptions skip their oldest */
} br_backlog_policy;

typedef struct br_ns_policies {
    int64_t retention_time_minutes; /* -1 forever, 0 none; BR_POLICY_UNSET */
    int64_t retention_size_mb;      /* -1 unlimited, 0 none; BR_POLICY_UNSET */
    int64_t message_ttl_seconds;    /* 0 = no TTL; BR_POLICY_UNSET */
    /* backlogQuotaType destination_storage */
    int64_t backlog_limit_bytes; /* "limitSize" (and the older "limit"); -1 none; UNSET */
    br_backlog_policy backlog_size_policy;
    /* backlogQuotaType message_age */
    int64_t backlog_limit_seconds; /* "limitTime"; -1 none; UNSET */
    br_backlog_policy backlog_age_policy;
} br_ns_policies;

/* The policies of tenant/ns as last read, or NULL when they are not in the cache (not read yet,
 * or the namespace does not exist). */
const br_ns_policies *br_ns_policies_find(br_broker *b, const char *tenant, const char *ns);

/* namespace.c calls it when the policies of tenant/ns changed (through this broker's REST API
 * or, by a watch, another broker's), after the cache holds the new values: policy.c applies
 * them to every open topic of the namespace. */
void br_policies_changed(br_broker *b, const char *tenant, const char *ns);

#endif

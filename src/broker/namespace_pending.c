/* No namespace policies are stored yet: every topic runs on the broker's defaults. The
 * namespaces store (namespace.c) replaces this file. */
#include "broker/namespace.h"

#include <stddef.h>

const br_ns_policies *br_ns_policies_find(br_broker *b, const char *tenant, const char *ns)
{
    (void)b;
    (void)tenant;
    (void)ns;
    return NULL;
}

/* Nothing applies policy changes yet: the enforcement's policy.c replaces this file. */
#include "broker/broker_int.h"
#include "broker/namespace.h"

void br_policies_changed(br_broker *b, const char *tenant, const char *ns)
{
    (void)b;
    (void)tenant;
    (void)ns;
}

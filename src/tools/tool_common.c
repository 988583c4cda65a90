/* Option handling shared by the subcommands: parse, report, set the log level. */
#include "tools.h"

#include <stdio.h>

const char *const mg_tool_log_levels[] = { "trace", "debug", "info", "warn", "error", "off", NULL };

int mg_tool_parse(const mg_cmd_spec *spec, void *opts, int argc, char **argv, mg_config_result *res)
{
    int rc = mg_config_parse(spec, opts, argc, argv, res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", spec->name, res->error);
        fprintf(stderr, "Try '%s --help' for the options.\n", spec->name);
        mg_config_free(spec, opts);
        return MG_EXIT_USAGE;
    }
    if (res->help_shown) {
        mg_config_free(spec, opts);
        return MG_EXIT_OK;
    }
    return -1;
}

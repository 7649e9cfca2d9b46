/*
 * spoold: parse options, start (recover, listen), run the loop until SIGTERM/SIGINT, stop
 * cleanly. Exit codes: 0 clean stop, 1 a runtime failure (the log says which), 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "server.h"
#include "slog.h"

int main(int argc, char **argv)
{
    struct server_config config;
    enum config_parse_result parsed = config_parse(argc, argv, &config);
    if (parsed == CONFIG_EXIT_OK)
        return 0;
    if (parsed != CONFIG_OK)
        return 2;
    static struct server server;
    int rc = server_start(&server, &config);
    if (rc == 0)
        rc = server_run(&server);
    server_destroy(&server);
    if (rc != 0) {
        slog_error("msg=\"spoold stopped on an error\"");
        return 1;
    }
    slog_info("msg=stopped");
    return 0;
}

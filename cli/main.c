/*
 * main.c - `events`: one binary for the server and the command line.
 */
#include "cli.h"
#include "events_version.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "events %s - event streaming, CDC and PITR for SQLite services\n\n"
            "Usage: events COMMAND [OPTIONS]\n\n"
            "Commands:\n"
            "  serve     receive events over HTTP and store them in the lake\n"
            "  query     run SQL over the lake (directly, or through a server)\n"
            "  history   the changes of one document, from the lake\n"
            "  send      deliver NDJSON events to a server through a durable outbox\n"
            "  snapshot  copy a tracked database into a file, to a server, or into a lake\n"
            "  restore   bring a database back to a bookmark, in place or from the lake alone\n"
            "  compact   fold closed hours of the lake into Parquet files\n"
            "  table     the lake's Iceberg table: where it is, and how other engines read it\n"
            "  tail      print events as the server accepts them\n"
            "  demo      a chat service sending a realistic workload to a server\n"
            "  subscriptions  webhook subscriptions: create, list, show, pause, retry, ...\n"
            "  version   print the version\n"
            "  help      this text\n\n"
            "Run `events COMMAND --help` for a command's options.\n",
            EVENTS_VERSION_STRING);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "query")) return cmd_query(argc - 1, argv + 1);
    if (!strcmp(cmd, "history")) return cmd_history(argc - 1, argv + 1);
    if (!strcmp(cmd, "send")) return cmd_send(argc - 1, argv + 1);
    if (!strcmp(cmd, "snapshot")) return cmd_snapshot(argc - 1, argv + 1);
    if (!strcmp(cmd, "restore")) return cmd_restore(argc - 1, argv + 1);
    if (!strcmp(cmd, "compact")) return cmd_compact(argc - 1, argv + 1);
    if (!strcmp(cmd, "table")) return cmd_table(argc - 1, argv + 1);
    if (!strcmp(cmd, "tail")) return cmd_tail(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "subscriptions")) return cmd_subscriptions(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("events %s\n", EVENTS_VERSION_STRING);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "events: unknown command \"%s\" (see events help)\n", cmd);
    return 2;
}

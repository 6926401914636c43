/*
 * options.c - flags with environment defaults, sizes and durations.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    uint64_t mul = 1;
    if (!strcasecmp(end, "") || !strcasecmp(end, "b"))
        mul = 1;
    else if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib"))
        mul = 1ull << 10;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
        mul = 1ull << 20;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
        mul = 1ull << 30;
    else
        return -1;
    double r = v * (double)mul;
    if (r > 9.2e18) return -1;
    *out = (uint64_t)r;
    return 0;
}

int cli_parse_duration_ms(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    double mul;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else if (!strcmp(end, "d"))
        mul = 86400000;
    else
        return -1;
    double r = v * mul;
    if (r > 9.2e15) return -1;
    *out = (int64_t)r;
    return 0;
}

static int apply(const char *cmd, const cli_option *o, const char *v, const char *from)
{
    switch (o->kind) {
    case OPT_STR: *(const char **)o->target = v; return 0;
    case OPT_FLAG: *(int *)o->target = 1; return 0;
    case OPT_STRINGS: {
        cli_strings *l = o->target;
        if (l->n == 64) {
            fprintf(stderr, "events %s: %s given more than 64 times\n", cmd, from);
            return -1;
        }
        l->v[l->n++] = v;
        return 0;
    }
    case OPT_SIZE:
        if (!cli_parse_size(v, o->target)) return 0;
        fprintf(stderr, "events %s: %s: \"%s\" is not a size (examples: 8MiB, 512k, 1048576)\n",
                cmd, from, v);
        return -1;
    case OPT_DURATION:
        if (!cli_parse_duration_ms(v, o->target)) return 0;
        fprintf(stderr, "events %s: %s: \"%s\" is not a duration (examples: 30s, 500ms, 2m)\n", cmd,
                from, v);
        return -1;
    case OPT_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (*v && !*end && !errno && n >= 0) {
            *(long *)o->target = n;
            return 0;
        }
        fprintf(stderr, "events %s: %s: \"%s\" is not a non-negative integer\n", cmd, from, v);
        return -1;
    }
    }
    return -1;
}

int cli_options_parse(const char *cmd, const cli_option *opts, int argc, char **argv)
{
    int n = 0;
    while (opts[n].name) n++;
    for (int i = 0; i < n; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v && *v && apply(cmd, &opts[i], v, opts[i].env)) return -1;
    }
    struct option *lo = calloc((size_t)n + 2, sizeof *lo);
    if (!lo) return -1;
    for (int i = 0; i < n; i++) {
        lo[i].name = opts[i].name;
        lo[i].has_arg = opts[i].kind == OPT_FLAG ? no_argument : required_argument;
        lo[i].val = 1000 + i;
    }
    lo[n].name = "help";
    lo[n].val = 'h';
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            rc = -2;
            break;
        }
        if (c < 1000) {
            fprintf(stderr,
                    "events %s: unknown or incomplete option \"%s\" (see events %s --help)\n", cmd,
                    argv[optind - 1], cmd);
            rc = -1;
            break;
        }
        char from[80];
        snprintf(from, sizeof from, "--%s", opts[c - 1000].name);
        if (apply(cmd, &opts[c - 1000], optarg, from)) {
            rc = -1;
            break;
        }
    }
    free(lo);
    return rc ? rc : optind;
}

int cli_options_take(const char *cmd, const char *usage, const cli_option *opts, int argc,
                     char **argv, int *status)
{
    int i = cli_options_parse(cmd, opts, argc, argv);
    if (i == -2) {
        cli_options_help(usage, opts);
        *status = 0;
        return -1;
    }
    if (i < 0) {
        *status = 2;
        return -1;
    }
    return i;
}

int cli_options_take_no_args(const char *cmd, const char *usage, const cli_option *opts, int argc,
                             char **argv, int *status)
{
    int i = cli_options_take(cmd, usage, opts, argc, argv, status);
    if (i < 0) return -1;
    if (i < argc) {
        fprintf(stderr, "events %s: unexpected argument \"%s\"\n", cmd, argv[i]);
        *status = 2;
        return -1;
    }
    return 0;
}

void cli_options_help(const char *usage, const cli_option *opts)
{
    printf("%s\n\nOptions (environment variable in brackets):\n", usage);
    for (const cli_option *o = opts; o->name; o++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-26s %s", flag, o->help);
        if (o->env) printf(" [%s]", o->env);
        printf("\n");
    }
}

/*
 * table.c - a query answer as a boxed table for a terminal.
 *
 * Input is the JSON answer of POST /query ({"columns":[{name,type}],
 * "rows":[[...]],...}), whether it came from a server or from the embedded
 * engine, so both modes of `events query` print alike. Numbers are right-
 * aligned, NULL is shown as NULL, nested values as compact JSON, and columns
 * wider than the terminal allows are cut with an ellipsis.
 */
#include "cli.h"
#include "buf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Display width: code points (UTF-8 continuation bytes do not count). */
static size_t width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) w++;
    return w;
}

/* The longest prefix of s of at most w display columns. */
static size_t cut(const char *s, size_t n, size_t w)
{
    size_t cols = 0, i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && ((unsigned char)s[j] & 0xc0) == 0x80) j++;
        if (cols + 1 > w) break;
        cols++;
        i = j;
    }
    return i;
}

static int numeric(const char *type)
{
    static const char *const num[] = {"TINYINT", "SMALLINT", "INTEGER",   "BIGINT",
                                      "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                                      "UBIGINT", "UHUGEINT", "FLOAT",     "DOUBLE"};
    for (size_t i = 0; i < sizeof num / sizeof *num; i++)
        if (!strcmp(type, num[i])) return 1;
    return !strncmp(type, "DECIMAL", 7);
}

/* The text of a cell: strings raw, NULL, nested values as JSON, control characters escaped.
 * Floating-point values show 15 significant digits (the JSON answer has them exactly). */
static char *cell_text(json_t *v, const char *type)
{
    char *s;
    if (json_is_null(v) || !v) return strdup("NULL");
    if (json_is_real(v) && (!strcmp(type, "DOUBLE") || !strcmp(type, "FLOAT"))) {
        char d[40];
        snprintf(d, sizeof d, "%.15g", json_real_value(v));
        return strdup(d);
    }
    if (json_is_string(v)) {
        s = strdup(json_string_value(v));
    } else {
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    for (char *p = s; p && *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' '; /* a table row is one line */
    return s;
}

static void rule(FILE *f, const size_t *w, size_t n, const char *l, const char *m, const char *r)
{
    fputs(l, f);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < w[i] + 2; k++) fputs("─", f);
        fputs(i + 1 < n ? m : r, f);
    }
    fputc('\n', f);
}

static void put_cell(FILE *f, const char *s, size_t w, int right, int center)
{
    size_t n = strlen(s), sw = width(s, n);
    int ellipsis = 0;
    if (sw > w) {
        n = cut(s, n, w - 1);
        sw = w - 1;
        ellipsis = 1;
    }
    size_t pad = w - sw - (size_t)ellipsis;
    size_t left = center ? pad / 2 : right ? pad : 0;
    fputc(' ', f);
    for (size_t k = 0; k < left; k++) fputc(' ', f);
    fwrite(s, 1, n, f);
    if (ellipsis) fputs("…", f);
    for (size_t k = 0; k < pad - left; k++) fputc(' ', f);
    fputs(" │", f);
}

int cli_print_table(FILE *f, const char *answer, size_t len)
{
    json_error_t e;
    json_t *a = json_loadb(answer, len, 0, &e);
    json_t *cols = json_object_get(a, "columns"), *rows = json_object_get(a, "rows");
    if (!json_is_array(cols) || !json_is_array(rows)) {
        json_decref(a);
        return -1;
    }
    size_t nc = json_array_size(cols), nr = json_array_size(rows);
    if (nc == 0) {
        fprintf(f, "(no columns)\n");
        json_decref(a);
        return 0;
    }
    size_t *w = calloc(nc, sizeof *w);
    char **cells = calloc(nc * (nr ? nr : 1), sizeof *cells);
    int *right = calloc(nc, sizeof *right);
    for (size_t c = 0; c < nc; c++) {
        json_t *col = json_array_get(cols, c);
        const char *name = json_string_value(json_object_get(col, "name"));
        const char *type = json_string_value(json_object_get(col, "type"));
        name = name ? name : "?";
        type = type ? type : "?";
        right[c] = numeric(type);
        w[c] = width(name, strlen(name));
        size_t tw = width(type, strlen(type));
        if (tw > w[c]) w[c] = tw;
    }
    for (size_t r = 0; r < nr; r++)
        for (size_t c = 0; c < nc; c++) {
            const char *type = json_string_value(json_object_get(json_array_get(cols, c), "type"));
            char *s = cell_text(json_array_get(json_array_get(rows, r), c), type ? type : "");
            cells[r * nc + c] = s;
            size_t sw = s ? width(s, strlen(s)) : 0;
            if (sw > w[c]) w[c] = sw;
        }

    /* fit the terminal: shrink the widest columns first, none below 8 */
    size_t term = 0;
    struct winsize ws;
    if (isatty(fileno(f)) && !ioctl(fileno(f), TIOCGWINSZ, &ws) && ws.ws_col) term = ws.ws_col;
    if (!term) term = 120;
    for (;;) {
        size_t total = 1;
        for (size_t c = 0; c < nc; c++) total += w[c] + 3;
        if (total <= term) break;
        size_t widest = 0;
        for (size_t c = 1; c < nc; c++)
            if (w[c] > w[widest]) widest = c;
        if (w[widest] <= 8) break;
        w[widest]--;
    }

    rule(f, w, nc, "┌", "┬", "┐");
    fputs("│", f);
    for (size_t c = 0; c < nc; c++) {
        const char *name = json_string_value(json_object_get(json_array_get(cols, c), "name"));
        put_cell(f, name ? name : "?", w[c], 0, 1);
    }
    fputs("\n│", f);
    for (size_t c = 0; c < nc; c++) {
        const char *type = json_string_value(json_object_get(json_array_get(cols, c), "type"));
        char lower[128];
        snprintf(lower, sizeof lower, "%s", type ? type : "?");
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        put_cell(f, lower, w[c], 0, 1);
    }
    fputc('\n', f);
    rule(f, w, nc, "├", "┼", "┤");
    for (size_t r = 0; r < nr; r++) {
        fputs("│", f);
        for (size_t c = 0; c < nc; c++) {
            const char *s = cells[r * nc + c] ? cells[r * nc + c] : "";
            put_cell(f, s, w[c], right[c] && strcmp(s, "NULL"), 0);
        }
        fputc('\n', f);
    }
    rule(f, w, nc, "└", "┴", "┘");
    json_t *rc = json_object_get(a, "rowCount"), *el = json_object_get(a, "elapsedMs");
    fprintf(f, "%lld row%s%s (%.3f s)\n", (long long)json_integer_value(rc),
            json_integer_value(rc) == 1 ? "" : "s",
            json_object_get(a, "error")                     ? ", cut short"
            : json_is_true(json_object_get(a, "truncated")) ? ", truncated at the row limit"
                                                            : "",
            json_number_value(el) / 1000.0);
    for (size_t i = 0; i < nc * nr; i++) free(cells[i]);
    free(cells);
    free(w);
    free(right);
    json_decref(a);
    return 0;
}

/*
 * hidden.c - refusing the catalog functions and views that show the
 * server's configuration (hidden.h says which and why).
 *
 * The check walks every node of the parse tree, so a name is found wherever
 * it is: a FROM, a subquery, a CTE, an expression, a lateral join. A CTE or a
 * column of the query that happens to bear one of these names is refused
 * too: the message names it, and renaming it is the way out.
 */
#include "hidden.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Functions (scalar or table) that show settings, paths or what the view reads. */
static const char *const FUNCTIONS[] = {
    "current_setting",        "duckdb_settings",
    "duckdb_views",           "duckdb_extensions",
    "duckdb_secrets",         "which_secret",
    "duckdb_temporary_files", "duckdb_logs",
    "duckdb_log_contexts",    "duckdb_external_file_cache",
    "duckdb_databases",       "pragma_database_list",
};

/* Catalog views (in any schema) with view definitions or settings in them. */
static const char *const TABLES[] = {
    "duckdb_settings",      "duckdb_views",  "duckdb_databases", "duckdb_logs",
    "pragma_database_list", "sqlite_master", "sqlite_schema",    "sqlite_temp_master",
    "sqlite_temp_schema",   "pg_settings",   "pg_views",
};

#define MAX_DEPTH 8 /* query() inside query() inside … */

typedef struct walk {
    hidden_parse_fn parse;
    void *ud;
    char *err;
    size_t errlen;
    int depth;
} walk;

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static int listed(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(list[i], name)) return 1;
    return 0;
}

static int hidden_table(const char *schema, const char *name)
{
    return listed(TABLES, sizeof TABLES / sizeof *TABLES, name) ||
           (!strcasecmp(schema, "information_schema") && !strcasecmp(name, "views"));
}

static int refuse(walk *w, const char *what, const char *suffix)
{
    snprintf(w->err, w->errlen,
             "%s%s is not available to queries: it shows the server's configuration or files", what,
             suffix);
    return -1;
}

static int visit(walk *w, json_t *node);

/* The constant string of an argument, or NULL. */
static const char *constant_string(json_t *e)
{
    if (strcmp(str(e, "class"), "CONSTANT")) return NULL;
    json_t *v = json_object_get(e, "value");
    if (strcmp(str(json_object_get(v, "type"), "id"), "VARCHAR")) return NULL;
    return json_string_value(json_object_get(v, "value"));
}

/* query('SQL') and query_table('name' or ['name', …]): their strings, checked as SQL or names. */
static int strings_of(walk *w, const char *fn, json_t *args)
{
    json_t *first = json_array_get(args, 0);
    if (!strcasecmp(fn, "query")) {
        const char *sql = constant_string(first);
        if (!sql) {
            snprintf(w->err, w->errlen, "query() takes only a constant string here");
            return -1;
        }
        if (w->depth >= MAX_DEPTH) {
            snprintf(w->err, w->errlen, "query() nested more than %d deep", MAX_DEPTH);
            return -1;
        }
        json_t *tree = w->parse(w->ud, sql);
        if (!tree) {
            snprintf(w->err, w->errlen, "query() takes only a SELECT here");
            return -1;
        }
        w->depth++;
        int rc = visit(w, tree);
        w->depth--;
        json_decref(tree);
        return rc;
    }
    json_t *names = first;
    size_t n = 1;
    if (!strcmp(str(first, "class"), "FUNCTION") &&
        !strcmp(str(first, "function_name"), "list_value")) {
        names = json_object_get(first, "children");
        n = json_array_size(names);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(names) ? json_array_get(names, i) : names;
        const char *name = constant_string(e);
        if (!name) {
            snprintf(w->err, w->errlen, "query_table() takes only constant strings here");
            return -1;
        }
        const char *dot = strrchr(name, '.');
        char schema[128] = "";
        if (dot && (size_t)(dot - name) < sizeof schema) {
            const char *s = name;
            const char *prev = memrchr(name, '.', (size_t)(dot - name));
            if (prev) s = prev + 1;
            snprintf(schema, sizeof schema, "%.*s", (int)(dot - s), s);
        }
        if (hidden_table(schema, dot ? dot + 1 : name)) return refuse(w, name, "");
    }
    return 0;
}

static int visit(walk *w, json_t *node)
{
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++)
            if (visit(w, json_array_get(node, i))) return -1;
        return 0;
    }
    if (!json_is_object(node)) return 0;
    if (!strcmp(str(node, "class"), "FUNCTION")) {
        const char *fn = str(node, "function_name");
        if (listed(FUNCTIONS, sizeof FUNCTIONS / sizeof *FUNCTIONS, fn)) return refuse(w, fn, "()");
        if ((!strcasecmp(fn, "query") || !strcasecmp(fn, "query_table")) &&
            strings_of(w, fn, json_object_get(node, "children")))
            return -1;
    }
    const char *type = str(node, "type");
    if ((!strcmp(type, "BASE_TABLE") || !strcmp(type, "SHOW_REF")) &&
        hidden_table(str(node, "schema_name"), str(node, "table_name"))) {
        char name[300];
        snprintf(name, sizeof name, "%s%s%s", str(node, "schema_name"),
                 *str(node, "schema_name") ? "." : "", str(node, "table_name"));
        return refuse(w, name, "");
    }
    const char *k;
    json_t *v;
    json_object_foreach(node, k, v)
    {
        if (visit(w, v)) return -1;
    }
    return 0;
}

int hidden_check(json_t *ast, hidden_parse_fn parse, void *ud, char *err, size_t errlen)
{
    walk w = {parse, ud, err, errlen, 0};
    return ast ? visit(&w, ast) : 0;
}

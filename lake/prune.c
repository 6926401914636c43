/*
 * prune.c - time bounds of a query's references to `events`, from DuckDB's
 * serialized parse tree.
 *
 * Soundness rests on one rule: a conjunct of a SELECT's WHERE that compares
 * the events reference's `ts` with a constant expression rejects every row
 * outside the bound, whatever else the query does (comparisons are
 * null-rejecting, so even an outer join cannot keep such a row). Anything not
 * recognised only loosens the result. Every `events` table reference found
 * anywhere in the tree must be accounted for by a SELECT's FROM clause, or the
 * query is left unbounded.
 */
#include "prune.h"
#include "layout.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NAMES 64

typedef struct walk {
    prune_result *r;
    const char *table;  /* the view whose references are bounded: "events", "rejected" */
    const char *column; /* by this column: "ts", "receivedAt" */
    int events;         /* table is events: the engine's macros read it */
    int seen;           /* BASE_TABLE events nodes anywhere */
    int accounted;      /* those found through a SELECT's FROM */
    int functions;      /* table functions anywhere */
    const char *aliases[MAX_NAMES]; /* of the events references */
    int naliases;
    const char *names[MAX_NAMES]; /* one-part column references, to compare with the aliases */
    int nnames;
} walk;

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int is_events_table(const walk *w, json_t *t)
{
    const char *type = str(t, "type"), *name = str(t, "table_name");
    return type && name && !strcmp(type, "BASE_TABLE") && !strcasecmp(name, w->table);
}

/* The macros that rollups can answer: their kind (layout.h), and whether they take (lo, hi). */
static const struct {
    const char *name;
    int kind, between;
} ROLLED[] = {
    {"rpc_latency", LAKE_ROLLUP_RPC, 0},     {"rpc_latency_between", LAKE_ROLLUP_RPC, 1},
    {"event_counts", LAKE_ROLLUP_COUNTS, 0}, {"event_counts_between", LAKE_ROLLUP_COUNTS, 1},
    {"objects", LAKE_ROLLUP_OBJECTS, 0},     {"objects_between", LAKE_ROLLUP_OBJECTS, 1}};

/* The index in ROLLED of a macro, or -1. */
static int rolled(const char *name)
{
    for (size_t i = 0; name && i < sizeof ROLLED / sizeof *ROLLED; i++)
        if (!strcasecmp(name, ROLLED[i].name)) return (int)i;
    return -1;
}

/* The engine's macros, which read events. */
static int is_macro(const char *name)
{
    return name && (!strcasecmp(name, "events_between") || !strcasecmp(name, "collection_at") ||
                    !strcasecmp(name, "doc_history") || rolled(name) >= 0);
}

static int is_ts(const walk *w, json_t *e, const char *alias)
{
    const char *cls = str(e, "class");
    if (!cls || strcmp(cls, "COLUMN_REF")) return 0;
    json_t *names = json_object_get(e, "column_names");
    size_t n = json_array_size(names);
    const char *last = n ? json_string_value(json_array_get(names, n - 1)) : NULL;
    if (!last || strcasecmp(last, w->column)) return 0;
    if (n == 1) return 1;
    const char *qual = json_string_value(json_array_get(names, n - 2));
    return n == 2 && qual && !strcasecmp(qual, alias);
}

/* 1 if e refers to no column and runs no subquery: its value is one constant. */
static int pure(json_t *e)
{
    if (json_is_array(e)) {
        size_t i;
        json_t *c;
        json_array_foreach(e, i, c) if (!pure(c)) return 0;
        return 1;
    }
    if (!json_is_object(e)) return 1;
    const char *cls = str(e, "class");
    if (cls && (!strcmp(cls, "COLUMN_REF") || !strcmp(cls, "SUBQUERY") || !strcmp(cls, "WINDOW") ||
                !strcmp(cls, "STAR") || !strcmp(cls, "LAMBDA") || !strcmp(cls, "LAMBDA_REF")))
        return 0;
    const char *k;
    json_t *c;
    json_object_foreach(e, k, c) if (!pure(c)) return 0;
    return 1;
}

static void add(prune_bound *v, int *n, json_t *expr, int strict)
{
    if (*n < PRUNE_MAX_BOUNDS) v[(*n)++] = (prune_bound){expr, strict};
}

static void compare(prune_ref *ref, const char *type, json_t *bound)
{
    if (!strcmp(type, "COMPARE_GREATERTHAN"))
        add(ref->lo, &ref->nlo, bound, 1);
    else if (!strcmp(type, "COMPARE_GREATERTHANOREQUALTO"))
        add(ref->lo, &ref->nlo, bound, 0);
    else if (!strcmp(type, "COMPARE_LESSTHAN"))
        add(ref->hi, &ref->nhi, bound, 1);
    else if (!strcmp(type, "COMPARE_LESSTHANOREQUALTO"))
        add(ref->hi, &ref->nhi, bound, 0);
    else if (!strcmp(type, "COMPARE_EQUAL")) {
        add(ref->lo, &ref->nlo, bound, 0);
        add(ref->hi, &ref->nhi, bound, 0);
    }
}

static const char *flip(const char *type)
{
    if (!strcmp(type, "COMPARE_GREATERTHAN")) return "COMPARE_LESSTHAN";
    if (!strcmp(type, "COMPARE_GREATERTHANOREQUALTO")) return "COMPARE_LESSTHANOREQUALTO";
    if (!strcmp(type, "COMPARE_LESSTHAN")) return "COMPARE_GREATERTHAN";
    if (!strcmp(type, "COMPARE_LESSTHANOREQUALTO")) return "COMPARE_GREATERTHANOREQUALTO";
    return type;
}

/* The top-level conjuncts of a WHERE clause that bound alias.ts. */
static void conjuncts(const walk *w, json_t *e, const char *alias, prune_ref *ref)
{
    const char *cls = str(e, "class"), *type = str(e, "type");
    if (!cls || !type) return;
    if (!strcmp(cls, "CONJUNCTION") && !strcmp(type, "CONJUNCTION_AND")) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(e, "children"), i, c) conjuncts(w, c, alias, ref);
    } else if (!strcmp(cls, "COMPARISON")) {
        json_t *l = json_object_get(e, "left"), *r = json_object_get(e, "right");
        if (is_ts(w, l, alias) && pure(r))
            compare(ref, type, r);
        else if (is_ts(w, r, alias) && pure(l))
            compare(ref, flip(type), l);
    } else if (!strcmp(cls, "BETWEEN")) {
        json_t *in = json_object_get(e, "input"), *lo = json_object_get(e, "lower"),
               *hi = json_object_get(e, "upper");
        if (is_ts(w, in, alias) && pure(lo) && pure(hi)) {
            add(ref->lo, &ref->nlo, lo, 0);
            add(ref->hi, &ref->nhi, hi, 0);
        }
    }
}

static prune_ref *new_ref(walk *w)
{
    prune_result *r = w->r;
    prune_ref *v = realloc(r->refs, (size_t)(r->nrefs + 1) * sizeof *v);
    if (!v) {
        r->unbounded = 1;
        r->why = "out of memory";
        return NULL;
    }
    r->refs = v;
    prune_ref *ref = &v[r->nrefs++];
    memset(ref, 0, sizeof *ref);
    return ref;
}

/* The macros of the query engine that read events, and how their arguments bound ts. */
static void table_function(walk *w, json_t *t)
{
    json_t *f = json_object_get(t, "function");
    const char *name = str(f, "function_name");
    json_t *args = json_object_get(f, "children");
    if (!name) return;
    if (!strcasecmp(name, "query") || !strcasecmp(name, "query_table")) {
        w->r->unbounded = 1;
        w->r->why = "query() and query_table() can reach events by name";
        return;
    }
    prune_ref *ref;
    if (!w->events) return; /* the macros read events only */
    int r = rolled(name);
    if ((!strcasecmp(name, "events_between") || (r >= 0 && ROLLED[r].between)) &&
        json_array_size(args) == 2) {
        if (!(ref = new_ref(w))) return;
        if (r >= 0) ref->rollup = ROLLED[r].kind + 1, ref->between = 1;
        if (pure(json_array_get(args, 0))) add(ref->lo, &ref->nlo, json_array_get(args, 0), 0);
        if (pure(json_array_get(args, 1))) add(ref->hi, &ref->nhi, json_array_get(args, 1), 1);
    } else if (r >= 0 && !ROLLED[r].between && json_array_size(args) == 1) {
        if (!(ref = new_ref(w))) return;
        ref->rollup = ROLLED[r].kind + 1;
        if (pure(json_array_get(args, 0))) add(ref->lo, &ref->nlo, json_array_get(args, 0), 0);
    } else if (!strcasecmp(name, "collection_at") && json_array_size(args) == 2) {
        if (!(ref = new_ref(w))) return;
        if (pure(json_array_get(args, 1))) add(ref->hi, &ref->nhi, json_array_get(args, 1), 0);
    } else if (!strcasecmp(name, "doc_history")) {
        if ((ref = new_ref(w))) ref->history = 1; /* every change of the document: no bound */
    }
}

static void from_clause(walk *w, json_t *t, json_t *where)
{
    const char *type = str(t, "type");
    if (!type) return;
    if (!strcmp(type, "JOIN")) {
        from_clause(w, json_object_get(t, "left"), where);
        from_clause(w, json_object_get(t, "right"), where);
    } else if (is_events_table(w, t)) {
        w->accounted++;
        prune_ref *ref = new_ref(w);
        const char *alias = str(t, "alias");
        if (w->naliases < MAX_NAMES)
            w->aliases[w->naliases++] = alias && *alias ? alias : w->table;
        else
            w->r->raw = 1;
        if (ref && where) conjuncts(w, where, alias && *alias ? alias : w->table, ref);
    } else if (!strcmp(type, "TABLE_FUNCTION")) {
        table_function(w, t);
    }
}

/*
 * 1 if a FROM clause reads only macros whose rows hold no whole event (those of ROLLED,
 * doc_history, collection_at): a star over it cannot reach one.
 */
static int from_without_events(json_t *t)
{
    const char *type = str(t, "type");
    if (!type) return 0;
    if (!strcmp(type, "JOIN"))
        return from_without_events(json_object_get(t, "left")) &&
               from_without_events(json_object_get(t, "right"));
    if (strcmp(type, "TABLE_FUNCTION")) return 0;
    const char *name = str(json_object_get(t, "function"), "function_name");
    return name && (rolled(name) >= 0 || !strcasecmp(name, "doc_history") ||
                    !strcasecmp(name, "collection_at"));
}

/* star_ok: the innermost SELECT around node reads no whole event through a star. */
static void visit(walk *w, json_t *node, int star_ok)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *c;
        json_array_foreach(node, i, c) visit(w, c, star_ok);
        return;
    }
    if (!json_is_object(node)) return;
    const char *type = str(node, "type");
    if (type && !strcmp(type, "SELECT_NODE")) {
        from_clause(w, json_object_get(node, "from_table"), json_object_get(node, "where_clause"));
        star_ok = from_without_events(json_object_get(node, "from_table"));
    }
    if (is_events_table(w, node)) w->seen++;
    /* a table function other than the macros might read the view by its name (query()) */
    if (type && !strcmp(type, "TABLE_FUNCTION") &&
        !is_macro(str(json_object_get(node, "function"), "function_name")))
        w->functions++;
    const char *cls = str(node, "class");
    if (cls && !strcmp(cls, "STAR") && !star_ok) w->r->raw = w->r->whole = 1;
    if (cls && !strcmp(cls, "COLUMN_REF")) {
        json_t *names = json_object_get(node, "column_names");
        size_t n = json_array_size(names);
        const char *last = n ? json_string_value(json_array_get(names, n - 1)) : NULL;
        if (last && !strcasecmp(last, "_events_json")) w->r->raw = 1;
        if (last && n == 1) {
            if (w->nnames < MAX_NAMES)
                w->names[w->nnames++] = last;
            else
                w->r->raw = 1;
        }
    }
    json_t *ctes = json_object_get(json_object_get(node, "cte_map"), "map");
    size_t i;
    json_t *c;
    json_array_foreach(ctes, i, c)
    {
        const char *k = str(c, "key");
        if (k && !strcasecmp(k, w->table)) {
            w->r->unbounded = 1;
            w->r->why = "a CTE named as the view";
        }
    }
    const char *k;
    json_object_foreach(node, k, c) visit(w, c, star_ok);
}

void prune_analyse(json_t *ast, prune_result *r)
{
    prune_analyse_table(ast, "events", "ts", r);
}

void prune_analyse_table(json_t *ast, const char *table, const char *column, prune_result *r)
{
    memset(r, 0, sizeof *r);
    json_t *stmts = json_object_get(ast, "statements");
    if (!ast || json_is_true(json_object_get(ast, "error")) || json_array_size(stmts) != 1) {
        r->unbounded = 1;
        r->raw = 1;
        r->why = "not a single SELECT that DuckDB can serialize";
        return;
    }
    walk w;
    memset(&w, 0, sizeof w);
    w.r = r;
    w.table = table;
    w.column = column;
    w.events = !strcasecmp(table, "events");
    visit(&w, json_array_get(stmts, 0), 0);
    /* a column reference that names an events reference is the whole row */
    for (int i = 0; i < w.nnames; i++)
        for (int k = 0; k < w.naliases; k++)
            if (!strcasecmp(w.names[i], w.aliases[k])) r->raw = r->whole = 1;
    if (r->unbounded) {
        r->raw = 1;
        return;
    }
    if (w.seen != w.accounted) {
        r->unbounded = 1;
        r->raw = 1;
        r->why = "events is used outside a SELECT's FROM clause (PIVOT, ...)";
        return;
    }
    if (r->nrefs == 0 && w.functions == 0) r->no_events = 1;
}

void prune_free(prune_result *r)
{
    free(r->refs);
    r->refs = NULL;
    r->nrefs = 0;
}

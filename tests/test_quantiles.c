/*
 * test_quantiles.c - _events_quantiles (lake/quantiles.h) against DuckDB's own
 * quantile_cont(x, [0.5, 0.95, 0.99]) over the same values, row by row, in an in-memory
 * database with 2 threads: the same lists of doubles (IS NOT DISTINCT FROM: exact values,
 * with every NaN equal and -0.0 equal to 0.0) for groups of 0 to 5,000 values, many ties,
 * NaN, infinities, negative zeros, NULLs, groups of NULLs only and of one value; the values
 * as one list, as many sorted sublists, with unsorted ones mixed in, all unsorted; a large
 * case of 2,000,000 values as 8 groups of 100 sorted sublists; literal lists (constant
 * input); what a zero and a NaN come back as; registering twice.
 */
#include "quantiles.h"
#include "duck_util.h"
#include "test.h"

#include <duckdb.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#define GROUPS 400 /* of the random data */
#define LARGE  2000000

typedef struct db {
    duckdb_database db;
    duckdb_connection c;
} db;

/* An in-memory database of 2 threads (the server's engine has 2) with the function. */
static int db_open(db *d)
{
    duckdb_config cfg;
    char err[256];
    memset(d, 0, sizeof *d);
    if (duckdb_create_config(&cfg) == DuckDBError) return -1;
    duckdb_set_config(cfg, "threads", "2");
    char *open_err = NULL;
    int bad = duckdb_open_ext(NULL, &d->db, cfg, &open_err) == DuckDBError;
    duckdb_destroy_config(&cfg);
    if (bad) {
        fprintf(stderr, "duckdb_open_ext: %s\n", open_err ? open_err : "?");
        duckdb_free(open_err);
        return -1;
    }
    if (duckdb_connect(d->db, &d->c) == DuckDBError) return -1;
    if (query_quantiles_register(d->c, err, sizeof err)) {
        fprintf(stderr, "query_quantiles_register: %s\n", err);
        return -1;
    }
    return 0;
}

static void db_close(db *d)
{
    duckdb_disconnect(&d->c);
    duckdb_close(&d->db);
}

/* The first value of a query's answer as text (NULL: "NULL"); "ERROR: …" if it failed. */
static char *sql_text(db *d, const char *sql)
{
    duckdb_result r;
    char *out;
    if (duckdb_query(d->c, sql, &r) == DuckDBError) {
        const char *e = duckdb_result_error(&r);
        size_t n = strlen(e) + 8;
        out = malloc(n);
        snprintf(out, n, "ERROR: %s", e);
    } else {
        char *v = duckdb_value_is_null(&r, 0, 0) ? NULL : duckdb_value_varchar(&r, 0, 0);
        out = strdup(v ? v : "NULL");
        duckdb_free(v);
    }
    duckdb_destroy_result(&r);
    return out;
}

/* What a comparison found: rows of the join, non-NULL answers of each side, differences. */
typedef struct cmp {
    int64_t rows, ours, theirs, differ;
} cmp;

/* Makes the table `name` (g, b) of quantile_cont(x, [0.5, 0.95, 0.99]) per group of `flat`. */
static int expect(db *d, const char *name, const char *flat)
{
    return duck_exec(d->c,
                     "CREATE TABLE %s AS SELECT g, quantile_cont(x, [0.5, 0.95, 0.99]) AS b "
                     "FROM %s GROUP BY g",
                     name, flat);
}

/*
 * Compares, per group g, _events_quantiles(l) over `lists` (a query of (g, l DOUBLE[][]))
 * with b of `expected` (expect's). A group missing from one side is a row with NULL on that
 * side.
 */
static int compare_sql(db *d, const char *ours, const char *expected, cmp *out);

static int compare(db *d, const char *lists, const char *expected, cmp *out)
{
    char sql[3072];
    snprintf(sql, sizeof sql, "SELECT g, _events_quantiles(l) AS a FROM (%s)", lists);
    return compare_sql(d, sql, expected, out);
}

/* The same for _events_quantiles_agg(sub) per group g over `subs`, a query of (g, sub DOUBLE[]). */
static int compare_agg(db *d, const char *subs, const char *expected, cmp *out)
{
    char sql[3072];
    snprintf(sql, sizeof sql, "SELECT g, _events_quantiles_agg(sub) AS a FROM (%s) GROUP BY g",
             subs);
    return compare_sql(d, sql, expected, out);
}

/* Compares a of `ours` (a query of (g, a)) with b of `expected` per group g. */
static int compare_sql(db *d, const char *ours, const char *expected, cmp *out)
{
    char sql[4096];
    snprintf(sql, sizeof sql,
             "SELECT count(*), count(a), count(b), count(*) FILTER (WHERE a IS DISTINCT FROM b) "
             "FROM (%s) FULL JOIN %s USING (g)",
             ours, expected);
    duckdb_result r;
    memset(out, 0, sizeof *out);
    if (duckdb_query(d->c, sql, &r) == DuckDBError) {
        fprintf(stderr, "duckdb: %s\n  in %s\n", duckdb_result_error(&r), sql);
        duckdb_destroy_result(&r);
        return -1;
    }
    out->rows = duckdb_value_int64(&r, 0, 0);
    out->ours = duckdb_value_int64(&r, 1, 0);
    out->theirs = duckdb_value_int64(&r, 2, 0);
    out->differ = duckdb_value_int64(&r, 3, 0);
    duckdb_destroy_result(&r);
    return 0;
}

#define CHECK_SAME(lists, expected, rows_, nonnull_)                                               \
    do {                                                                                           \
        cmp c_;                                                                                    \
        REQUIRE(compare(&d, lists, expected, &c_) == 0);                                           \
        CHECK_INT(rows_, c_.rows);                                                                 \
        CHECK_INT(nonnull_, c_.ours);                                                              \
        CHECK_INT(nonnull_, c_.theirs);                                                            \
        CHECK_INT(0, c_.differ);                                                                   \
    } while (0)

#define CHECK_SAME_AGG(subs, expected, rows_, nonnull_)                                            \
    do {                                                                                           \
        cmp c_;                                                                                    \
        REQUIRE(compare_agg(&d, subs, expected, &c_) == 0);                                        \
        CHECK_INT(rows_, c_.rows);                                                                 \
        CHECK_INT(nonnull_, c_.ours);                                                              \
        CHECK_INT(nonnull_, c_.theirs);                                                            \
        CHECK_INT(0, c_.differ);                                                                   \
    } while (0)

/* ---- the random data ------------------------------------------------------------------ */

/* Group g's size (as the SQL below has it): 0..3 for every fourth group, else 0..5000. */
static int64_t group_size(int64_t g)
{
    return g % 4 == 3 ? (g / 4) % 4 : (g * 7919) % 5001;
}

/*
 * t(g, i, x, chunk): GROUPS groups of group_size values. Every tenth group is NULLs only;
 * else by g % 4: five values -2..2 with -0.0 among the zeros (ties); spread values with an
 * occasional NaN; -inf, -0.0, +inf, NaN and NULLs among thirteen values (the 0.95 quantile
 * lands between infinities, the 0.99 on NaN; the first two values are NaN, so no group is
 * NULLs only); spread values in groups of 0 to 3. chunk splits a group into 1 to 97 parts.
 */
static const char T_SQL[] =
    "CREATE TABLE t AS "
    "WITH gs AS (SELECT g, CASE WHEN g % 4 = 3 THEN (g // 4) % 4 ELSE (g * 7919) % 5001 END AS n "
    "            FROM range(400) r(g)), "
    "     rs AS (SELECT g, unnest(range(n)) AS i FROM gs) "
    "SELECT g, i, CASE "
    "  WHEN g % 10 = 9 THEN NULL "
    "  WHEN g % 4 = 0 THEN CASE WHEN hash(g, i) % 10 = 0 THEN '-0.0'::DOUBLE "
    "                      ELSE (hash(g, i) % 5)::DOUBLE - 2 END "
    "  WHEN g % 4 = 1 THEN CASE WHEN hash(g, i) % 997 = 0 THEN 'nan'::DOUBLE "
    "                      ELSE ((hash(g, i) % 2000003)::DOUBLE - 1000000) / 977 END "
    "  WHEN g % 4 = 2 THEN CASE WHEN i % 100 BETWEEN 50 AND 54 THEN NULL "
    "                      WHEN i % 100 < 2 THEN 'nan'::DOUBLE WHEN i % 100 < 7 THEN 'inf'::DOUBLE "
    "                      WHEN i % 100 < 10 THEN '-inf'::DOUBLE "
    "                      WHEN i % 100 < 15 THEN '-0.0'::DOUBLE "
    "                      ELSE (hash(g, i) % 13)::DOUBLE - 6 END "
    "  ELSE ((hash(g, i) % 1000)::DOUBLE - 500) / 7 END AS x, "
    "  hash(g, i, 'chunk') % (1 + g % 97)::UBIGINT AS chunk "
    "FROM rs";

/*
 * subs(g, chunk, sorted, shuffled): each part's values as list(x ORDER BY x) (NULLs left out
 * but in every third part, which makes that sublist one to copy; a part of NULLs only is a
 * NULL sublist), and in a shuffled order.
 */
static const char SUBS_SQL[] =
    "CREATE TABLE subs AS SELECT g, chunk, "
    "list(x ORDER BY x) FILTER (WHERE x IS NOT NULL OR chunk % 3 = 0) AS sorted, "
    "list(x ORDER BY hash(i, 'shuffle')) AS shuffled FROM t GROUP BY g, chunk";

/* The number of groups with values, of those with a non-NULL value, and with exactly one. */
static void expected_groups(int64_t *groups, int64_t *nonnull, int64_t *single)
{
    *groups = *nonnull = *single = 0;
    for (int64_t g = 0; g < GROUPS; g++) {
        if (!group_size(g)) continue;
        ++*groups;
        if (g % 10 == 9) continue;
        ++*nonnull;
        *single += group_size(g) == 1; /* NULLs come from the 51st value on */
    }
}

TEST(test_quantiles_equal_quantile_cont_over_one_list)
{
    db d;
    int64_t groups, nonnull, single;
    REQUIRE(db_open(&d) == 0);
    REQUIRE(duck_exec(d.c, "%s", T_SQL) == 0);
    REQUIRE(expect(&d, "t_q", "t") == 0);
    expected_groups(&groups, &nonnull, &single);
    /* as the rows came (unsorted, NULLs inside), then sorted: one list per group */
    CHECK_SAME("SELECT g, [list(x)] AS l FROM t GROUP BY g", "t_q", groups, nonnull);
    CHECK_SAME("SELECT g, [list(x ORDER BY x) FILTER (WHERE x IS NOT NULL)] AS l "
               "FROM t GROUP BY g",
               "t_q", groups, nonnull);
    /* the data has what it is meant to: groups of one value, of NULLs only, of ~5,000 */
    char want[64],
        *have = sql_text(&d, "SELECT count(*) FILTER (WHERE c = 1) || ' ' || "
                             "count(*) FILTER (WHERE c = 0) || ' ' || max(n) FROM "
                             "(SELECT g, count(x) AS c, count(*) AS n FROM t GROUP BY g)");
    int64_t largest = 0;
    for (int64_t g = 0; g < GROUPS; g++)
        largest = group_size(g) > largest ? group_size(g) : largest;
    snprintf(want, sizeof want, "%" PRId64 " %" PRId64 " %" PRId64, single, groups - nonnull,
             largest);
    CHECK_STR(want, have);
    free(have);
    db_close(&d);
}

/* The random data, its quantile_cont (t_q) and its sublists (subs): 0, or -1 having failed. */
static int subs_open(db *d, int64_t *groups, int64_t *nonnull)
{
    int64_t single;
    if (db_open(d)) {
        test_fail(__FILE__, __LINE__, "cannot open DuckDB");
        return -1;
    }
    if (duck_exec(d->c, "%s", T_SQL) || expect(d, "t_q", "t") || duck_exec(d->c, "%s", SUBS_SQL)) {
        test_fail(__FILE__, __LINE__, "cannot make the sublists");
        db_close(d);
        return -1;
    }
    expected_groups(groups, nonnull, &single);
    return 0;
}

/* LARGE durations in ms to 3 decimals (big), value i in group i % 8 and part i / 8 % 100, the
 * parts' sorted and unsorted lists (bigsubs) and the groups' quantile_cont (big_q): 0 or -1. */
static int big_open(db *d)
{
    if (duck_exec(d->c,
                  "CREATE TABLE big AS SELECT i, i %% 8 AS g, i // 8 %% 100 AS chunk, "
                  "(hash(i) %% 100000007)::DOUBLE / 1000 AS x FROM range(%d) r(i)",
                  LARGE))
        return -1;
    if (duck_exec(d->c, "CREATE TABLE bigsubs AS SELECT g, chunk, list(x ORDER BY x) AS sorted, "
                        "list(x) AS unsorted FROM big GROUP BY g, chunk"))
        return -1;
    return expect(d, "big_q", "big");
}

TEST(test_quantiles_equal_quantile_cont_over_sorted_and_unsorted_sublists)
{
    db d;
    int64_t groups, nonnull;
    if (subs_open(&d, &groups, &nonnull)) return;
    /* all sorted (every third with NULLs, read as unsorted) */
    CHECK_SAME("SELECT g, list(sorted) AS l FROM subs GROUP BY g", "t_q", groups, nonnull);
    /* a fifth of them unsorted: sorted and merged into the runs */
    CHECK_SAME("SELECT g, list(CASE WHEN chunk % 5 = 1 THEN shuffled ELSE sorted END) AS l "
               "FROM subs GROUP BY g",
               "t_q", groups, nonnull);
    /* four fifths unsorted: every value selected in one copy */
    CHECK_SAME("SELECT g, list(CASE WHEN chunk % 5 <> 1 THEN shuffled ELSE sorted END) AS l "
               "FROM subs GROUP BY g",
               "t_q", groups, nonnull);
    /* all unsorted */
    CHECK_SAME("SELECT g, list(shuffled) AS l FROM subs GROUP BY g", "t_q", groups, nonnull);
    /* empty and NULL sublists beside the others change nothing */
    CHECK_SAME("SELECT g, list_concat(list(sorted), [[], NULL, []]) AS l FROM subs GROUP BY g",
               "t_q", groups, nonnull);
    db_close(&d);
}

/* The aggregate over the rows of sublists, as rpc_latency takes them from rollups and rows */
TEST(test_quantiles_agg_equals_quantile_cont_over_sorted_and_unsorted_rows)
{
    db d;
    int64_t groups, nonnull;
    if (subs_open(&d, &groups, &nonnull)) return;
    CHECK_SAME_AGG("SELECT g, sorted AS sub FROM subs", "t_q", groups, nonnull);
    CHECK_SAME_AGG("SELECT g, CASE WHEN chunk % 5 = 1 THEN shuffled ELSE sorted END AS sub "
                   "FROM subs",
                   "t_q", groups, nonnull);
    CHECK_SAME_AGG("SELECT g, shuffled AS sub FROM subs", "t_q", groups, nonnull);
    /* NULL and empty lists beside the others change nothing */
    CHECK_SAME_AGG("SELECT g, sorted AS sub FROM subs UNION ALL SELECT g, NULL FROM subs "
                   "UNION ALL SELECT DISTINCT g, []::DOUBLE[] FROM subs",
                   "t_q", groups, nonnull);
    /* many rows per group, over both threads: states are combined */
    REQUIRE(big_open(&d) == 0);
    CHECK_SAME_AGG("SELECT g, sorted AS sub FROM bigsubs", "big_q", 8, 8);
    CHECK_SAME_AGG("SELECT g, CASE WHEN chunk = 7 THEN unsorted ELSE sorted END AS sub "
                   "FROM bigsubs",
                   "big_q", 8, 8);
    db_close(&d);
}

TEST(test_quantiles_equal_quantile_cont_over_many_large_sorted_sublists)
{
    db d;
    REQUIRE(db_open(&d) == 0);
    REQUIRE(big_open(&d) == 0);
    CHECK_SAME("SELECT g, list(sorted) AS l FROM bigsubs GROUP BY g", "big_q", 8, 8);
    /* one part of fresh rows, unsorted */
    CHECK_SAME("SELECT g, list(CASE WHEN chunk = 7 THEN unsorted ELSE sorted END) AS l "
               "FROM bigsubs GROUP BY g",
               "big_q", 8, 8);
    db_close(&d);
}

/* ---- literal lists ---------------------------------------------------------------------- */

TEST(test_quantiles_of_literal_lists_equal_quantile_cont)
{
    db d;
    REQUIRE(db_open(&d) == 0);
    REQUIRE(duck_exec(d.c, "CREATE TABLE lit AS SELECT * FROM (VALUES "
                           "(1, [[3.0, 1.0], NULL, [2.0, NULL]]), (2, [[]]), (3, []), (4, NULL), "
                           "(5, [[NULL]]), (6, [[5.0]]), (7, [['-0.0'::DOUBLE, 0.0]]), "
                           "(8, [['nan'::DOUBLE], [1.0, 'inf'::DOUBLE]]), "
                           "(9, [[1.0, 2.0], [0.5, 3.0]]), (10, [['inf'::DOUBLE, 'inf'::DOUBLE]]), "
                           "(11, [[-1.5], [-1.5, 2.25], [7.0]]), "
                           /* two long runs and a few values to sort */
                           "(12, [range(1000)::DOUBLE[], range(500, 2000)::DOUBLE[], "
                           "      [7.5, 3.25, 1999.5, -1.0]]), "
                           "(13, [[1.0, 'nan'::DOUBLE], ['-inf'::DOUBLE, 2.0]])) v(g, l)") == 0);
    REQUIRE(duck_exec(d.c, "CREATE TABLE litflat AS SELECT g, unnest(flatten(l)) AS x FROM lit") ==
            0);
    REQUIRE(expect(&d, "litflat_q", "litflat") == 0);
    /* 13 rows; 2-5 hold no value */
    CHECK_SAME("SELECT g, l::DOUBLE[][] AS l FROM lit", "litflat_q", 13, 9);

    /* constant arguments (folded by DuckDB, given to the function as constant vectors) */
    char *v = sql_text(&d, "SELECT _events_quantiles([[3.0, 1.0], NULL, [2.0, NULL]]) IS NOT "
                           "DISTINCT FROM quantile_cont(x::DOUBLE, [0.5, 0.95, 0.99]) "
                           "FROM unnest([1.0, 2.0, 3.0]) u(x)");
    CHECK_STR("true", v);
    free(v);
    v = sql_text(&d, "SELECT _events_quantiles([[3.0, 1.0], NULL, [2.0, NULL]])::VARCHAR");
    CHECK_STR("[2.0, 2.9, 2.98]", v);
    free(v);
    v = sql_text(&d, "SELECT _events_quantiles(NULL)");
    CHECK_STR("NULL", v);
    free(v);
    v = sql_text(&d, "SELECT _events_quantiles([])");
    CHECK_STR("NULL", v);
    free(v);
    /* infinities: lo * (1 - d) + hi * d, where lo + (hi - lo) * d would give NaN */
    v = sql_text(&d, "SELECT _events_quantiles([['inf'::DOUBLE, 'inf'::DOUBLE]])::VARCHAR");
    CHECK_STR("[inf, inf, inf]", v);
    free(v);
    db_close(&d);
}

TEST(test_quantiles_return_positive_zero_and_nan)
{
    db d;
    REQUIRE(db_open(&d) == 0);
    /* quantile_cont answers [-0.0, -0.0, -0.0] here: its zero is whichever it selected */
    char *v = sql_text(&d, "SELECT _events_quantiles([['-0.0'::DOUBLE, '-0.0'::DOUBLE]])::VARCHAR");
    CHECK_STR("[0.0, 0.0, 0.0]", v);
    free(v);
    v = sql_text(&d, "SELECT _events_quantiles([['-0.0'::DOUBLE], ['-0.0'::DOUBLE, 1.0]])"
                     "::VARCHAR");
    CHECK_STR("[0.0, 0.8999999999999999, 0.98]", v); /* quantile_cont: [-0.0, 0.899…, 0.98] */
    free(v);
    v = sql_text(&d, "SELECT _events_quantiles([['nan'::DOUBLE], [2.0]])::VARCHAR");
    CHECK_STR("[nan, nan, nan]", v);
    free(v);
    db_close(&d);
}

TEST(test_quantiles_register_twice_fails_and_other_connections_see_it)
{
    db d;
    char err[256] = "";
    REQUIRE(db_open(&d) == 0);
    CHECK_INT(-1, query_quantiles_register(d.c, err, sizeof err));
    CHECK_CONTAINS("cannot register _events_quantiles", err);
    duckdb_connection c2;
    REQUIRE(duckdb_connect(d.db, &c2) == DuckDBSuccess);
    duckdb_result r;
    CHECK(duckdb_query(c2, "SELECT _events_quantiles([[1.0, 2.0]])", &r) == DuckDBSuccess);
    duckdb_destroy_result(&r);
    duckdb_disconnect(&c2);
    db_close(&d);
}

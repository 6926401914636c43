/*
 * cdc_util.c - see cdc_util.h.
 */
#include "cdc_util.h"
#include "cdc.h"
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *db_hash(sqlite3 *db)
{
    static char out[8][65];
    static int next;
    char *o = out[next++ % 8];
    char **names;
    int n;
    sha256 h;
    sha256_init(&h);
    if (cdc_tables(db, &names, &n)) {
        strcpy(o, "error");
        return o;
    }
    for (int i = 0; i < n; i++) {
        sha256_update(&h, names[i], strlen(names[i]) + 1);
        char sql[600];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", names[i]);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
            int ncol = sqlite3_column_count(st);
            sqlite3_finalize(st);
            int k = snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY ", names[i]);
            for (int c = 1; c <= ncol && k < (int)sizeof sql - 8; c++)
                k += snprintf(sql + k, sizeof sql - (size_t)k, "%s%d", c > 1 ? ", " : "", c);
            if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
                while (sqlite3_step(st) == SQLITE_ROW)
                    for (int c = 0; c < ncol; c++) {
                        unsigned char t = (unsigned char)sqlite3_column_type(st, c);
                        sha256_update(&h, &t, 1);
                        if (t == SQLITE_INTEGER) {
                            long long v = sqlite3_column_int64(st, c);
                            sha256_update(&h, &v, sizeof v);
                        } else if (t == SQLITE_FLOAT) {
                            double v = sqlite3_column_double(st, c);
                            sha256_update(&h, &v, sizeof v);
                        } else if (t != SQLITE_NULL) {
                            const void *p = t == SQLITE_TEXT
                                                ? (const void *)sqlite3_column_text(st, c)
                                                : sqlite3_column_blob(st, c);
                            int len = sqlite3_column_bytes(st, c);
                            sha256_update(&h, &len, sizeof len);
                            if (len) sha256_update(&h, p, (size_t)len);
                        }
                    }
            }
        }
        sqlite3_finalize(st);
        free(names[i]);
    }
    free(names);
    unsigned char d[32];
    sha256_final(&h, d);
    sha256_hex(d, o);
    return o;
}

long long sql_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int tracked_by_nobody(sqlite3 *db)
{
    return cdc_source(db) == NULL;
}

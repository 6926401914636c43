/*
 * auth.c - tokens file parsing and constant-time token lookup.
 */
#include "auth.h"
#include "siphash.h"
#include "evrand.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct entry {
    char name[64];
    unsigned char hash[16];
    unsigned scopes;
} entry;

struct auth {
    entry *v;
    size_t n, cap;
    unsigned char key[16];
};

auth *auth_new(void)
{
    auth *a = calloc(1, sizeof *a);
    if (a && evrand_secure(a->key, sizeof a->key)) {
        free(a);
        return NULL;
    }
    return a;
}

void auth_free(auth *a)
{
    if (!a) return;
    free(a->v);
    free(a);
}

size_t auth_count(const auth *a)
{
    return a ? a->n : 0;
}

int auth_parse_scopes(const char *s, unsigned *out)
{
    unsigned v = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 6 && !strncmp(s, "ingest", 6))
            v |= SCOPE_INGEST;
        else if (n == 5 && !strncmp(s, "query", 5))
            v |= SCOPE_QUERY;
        else if (n == 5 && !strncmp(s, "admin", 5))
            v |= SCOPE_ADMIN;
        else
            return -1;
        s += n;
        if (*s == ',') s++;
    }
    if (!v) return -1;
    *out = v;
    return 0;
}

int auth_add(auth *a, const char *name, const char *token, unsigned scopes, char *err,
             size_t errlen)
{
    size_t tl = strlen(token);
    if (tl < AUTH_TOKEN_MIN) {
        snprintf(err, errlen, "token %s is shorter than %d characters", name, AUTH_TOKEN_MIN);
        return -1;
    }
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)token[i] <= ' ' || (unsigned char)token[i] >= 0x7f) {
            snprintf(err, errlen, "token %s has a character outside printable ASCII", name);
            return -1;
        }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        entry *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    unsigned char hash[16];
    siphash128(token, tl, a->key, hash);
    for (size_t i = 0; i < a->n; i++)
        if (!memcmp(a->v[i].hash, hash, sizeof hash)) {
            snprintf(err, errlen, "token %s is the same as token %s: each token must be different",
                     name, a->v[i].name);
            return -1;
        }
    entry *e = &a->v[a->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    memcpy(e->hash, hash, sizeof hash);
    e->scopes = (scopes & SCOPE_ADMIN) ? (SCOPE_INGEST | SCOPE_QUERY | SCOPE_ADMIN) : scopes;
    return 0;
}

int auth_load_file(auth *a, const char *path, char *warn, size_t warnlen, char *err, size_t errlen)
{
    if (warnlen) warn[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "tokens file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *bad = fstat(fileno(f), &st)  ? strerror(errno)
                      : S_ISDIR(st.st_mode)  ? "it is a directory"
                      : !S_ISREG(st.st_mode) ? "it is not a regular file"
                                             : NULL;
    if (bad) {
        snprintf(err, errlen, "tokens file %s: %s", path, bad);
        fclose(f);
        return -1;
    }
    if ((st.st_mode & S_IROTH) && warnlen)
        snprintf(warn, warnlen,
                 "tokens file %s can be read by every user (mode %04o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
    char line[1024];
    int lineno = 0, rc = 0;
    size_t before = a->n;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *save, *name = strtok_r(line, " \t\r\n", &save);
        if (!name) continue;
        char *token = strtok_r(NULL, " \t\r\n", &save), *scopes = strtok_r(NULL, " \t\r\n", &save);
        unsigned sc;
        if (!token || !scopes || strtok_r(NULL, " \t\r\n", &save)) {
            snprintf(err, errlen, "tokens file %s:%d: expected NAME TOKEN SCOPES", path, lineno);
            rc = -1;
        } else if (auth_parse_scopes(scopes, &sc)) {
            snprintf(err, errlen,
                     "tokens file %s:%d: unknown scope in \"%s\" (use ingest, query, admin)", path,
                     lineno, scopes);
            rc = -1;
        } else {
            char e2[256];
            if (auth_add(a, name, token, sc, e2, sizeof e2)) {
                snprintf(err, errlen, "tokens file %s:%d: %s", path, lineno, e2);
                rc = -1;
            }
        }
    }
    if (!rc && ferror(f)) {
        snprintf(err, errlen, "tokens file %s: cannot read it: %s", path, strerror(errno));
        rc = -1;
    }
    if (!rc && a->n == before) {
        snprintf(err, errlen,
                 "tokens file %s has no tokens (lines of NAME TOKEN SCOPES): refusing to start "
                 "without them",
                 path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

unsigned auth_check(const auth *a, const char *header, const char **name)
{
    if (name) *name = NULL;
    if (!header || strncasecmp(header, "Bearer ", 7)) return 0;
    const char *t = header + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) n--;
    if (!n) return 0;
    unsigned char h[16];
    siphash128(t, n, a->key, h);
    unsigned found = 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned char diff = 0;
        for (int k = 0; k < 16; k++) diff |= (unsigned char)(h[k] ^ a->v[i].hash[k]);
        unsigned match = (unsigned)(diff == 0);
        if (match && !found) {
            found = a->v[i].scopes;
            if (name) *name = a->v[i].name;
        }
    }
    return found;
}

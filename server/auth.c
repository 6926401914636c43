/*
 * auth.c - tokens file parsing and constant-time token lookup.
 */
#include "auth.h"
#include "event.h"
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
    auth_token tok; /* its strings point into name and the two below */
    char type[EVENT_TYPE_MAX + 1];
    char ts_key[72];
} entry;

struct auth {
    entry **v; /* each entry allocated alone: an auth_token handed out never moves */
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
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
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
            v |= AUTH_SCOPE_INGEST;
        else if (n == 5 && !strncmp(s, "query", 5))
            v |= AUTH_SCOPE_QUERY;
        else if (n == 5 && !strncmp(s, "admin", 5))
            v |= AUTH_SCOPE_ADMIN;
        else if (n == 8 && !strncmp(s, "webhooks", 8))
            v |= AUTH_SCOPE_WEBHOOKS;
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
    return auth_add_with(a, name, token, scopes, NULL, NULL, err, errlen);
}

int auth_add_with(auth *a, const char *name, const char *token, unsigned scopes, const char *type,
                  const char *ts_key, char *err, size_t errlen)
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
        entry **v = realloc(a->v, cap * sizeof *v);
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
        if (!memcmp(a->v[i]->hash, hash, sizeof hash)) {
            snprintf(err, errlen, "token %s is the same as token %s: each token must be different",
                     name, a->v[i]->name);
            return -1;
        }
    entry *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    memcpy(e->hash, hash, sizeof hash);
    e->tok.name = e->name;
    e->tok.scopes =
        (scopes & AUTH_SCOPE_ADMIN)
            ? (AUTH_SCOPE_INGEST | AUTH_SCOPE_QUERY | AUTH_SCOPE_ADMIN | AUTH_SCOPE_WEBHOOKS)
            : scopes;
    if (type) {
        snprintf(e->type, sizeof e->type, "%s", type);
        e->tok.type = e->type;
    }
    if (ts_key) {
        snprintf(e->ts_key, sizeof e->ts_key, "%s", ts_key);
        e->tok.ts_key = e->ts_key;
    }
    a->v[a->n++] = e;
    return 0;
}

/*
 * The options after a line's scopes: type=TYPE and ts_key=NAME, each at most once, checked as
 * ?type= and ?ts_key= are, and only on a token that may ingest.
 */
static int token_options(char **save, unsigned scopes, const char **type, const char **ts_key,
                         char *err, size_t errlen)
{
    char *opt;
    while ((opt = strtok_r(NULL, " \t\r\n", save))) {
        const char **slot = !strncmp(opt, "type=", 5)     ? type
                            : !strncmp(opt, "ts_key=", 7) ? ts_key
                                                          : NULL;
        if (!slot) {
            snprintf(err, errlen, "unknown option \"%.60s\" (use type=TYPE or ts_key=NAME)", opt);
            return -1;
        }
        if (*slot) {
            snprintf(err, errlen, "option \"%.60s\" given twice", opt);
            return -1;
        }
        *slot = strchr(opt, '=') + 1;
    }
    if (*type && !event_type_valid(*type, strlen(*type))) {
        snprintf(err, errlen,
                 "type=%.140s is not an event type: it must match [a-z0-9_]+(.[a-z0-9_-]+)* and "
                 "be at most %d bytes",
                 *type, EVENT_TYPE_MAX);
        return -1;
    }
    if (*ts_key && !event_ts_key_valid(*ts_key, strlen(*ts_key))) {
        snprintf(err, errlen,
                 "ts_key=%.80s cannot name the time member: it must be 1-64 of [A-Za-z0-9_.@$-] "
                 "and not id, type, do or receivedAt",
                 *ts_key);
        return -1;
    }
    if ((*type || *ts_key) && !(scopes & (AUTH_SCOPE_INGEST | AUTH_SCOPE_ADMIN))) {
        snprintf(err, errlen,
                 "type= and ts_key= are for tokens that ingest (scope ingest or admin)");
        return -1;
    }
    return 0;
}

FILE *auth_open_secret_file(const char *what, const char *path, char *warn, size_t warnlen,
                            char *err, size_t errlen)
{
    if (warnlen) warn[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    const char *bad = fstat(fileno(f), &st)  ? strerror(errno)
                      : S_ISDIR(st.st_mode)  ? "it is a directory"
                      : !S_ISREG(st.st_mode) ? "it is not a regular file"
                                             : NULL;
    if (bad) {
        snprintf(err, errlen, "%s %s: %s", what, path, bad);
        fclose(f);
        return NULL;
    }
    if ((st.st_mode & S_IROTH) && warnlen)
        snprintf(warn, warnlen, "%s %s can be read by every user (mode %04o): chmod 600 it", what,
                 path, (unsigned)(st.st_mode & 07777));
    return f;
}

int auth_load_file(auth *a, const char *path, char *warn, size_t warnlen, char *err, size_t errlen)
{
    FILE *f = auth_open_secret_file("tokens file", path, warn, warnlen, err, errlen);
    if (!f) return -1;
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
        char e2[256];
        const char *type = NULL, *ts_key = NULL;
        if (!token || !scopes) {
            snprintf(err, errlen,
                     "tokens file %s:%d: expected NAME TOKEN SCOPES [type=TYPE] [ts_key=NAME]",
                     path, lineno);
            rc = -1;
        } else if (auth_parse_scopes(scopes, &sc)) {
            snprintf(
                err, errlen,
                "tokens file %s:%d: unknown scope in \"%s\" (use ingest, query, admin, webhooks)",
                path, lineno, scopes);
            rc = -1;
        } else if (token_options(&save, sc, &type, &ts_key, e2, sizeof e2)) {
            snprintf(err, errlen, "tokens file %s:%d: %s", path, lineno, e2);
            rc = -1;
        } else if (auth_add_with(a, name, token, sc, type, ts_key, e2, sizeof e2)) {
            snprintf(err, errlen, "tokens file %s:%d: %s", path, lineno, e2);
            rc = -1;
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
    const auth_token *t = auth_lookup(a, header);
    if (name) *name = t ? t->name : NULL;
    return t ? t->scopes : 0;
}

const auth_token *auth_lookup(const auth *a, const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7)) return NULL;
    const char *t = header + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) n--;
    if (!n) return NULL;
    unsigned char h[16];
    siphash128(t, n, a->key, h);
    const auth_token *found = NULL;
    for (size_t i = 0; i < a->n; i++) {
        unsigned char diff = 0;
        for (int k = 0; k < 16; k++) diff |= (unsigned char)(h[k] ^ a->v[i]->hash[k]);
        if (diff == 0 && !found) found = &a->v[i]->tok;
    }
    return found;
}

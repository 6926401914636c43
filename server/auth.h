/*
 * auth.h - bearer tokens with scopes.
 *
 * Tokens come from a tokens file, one per line:
 *     NAME  TOKEN  SCOPES  [type=TYPE] [ts_key=NAME]
 * SCOPES: comma-separated ingest,query,admin,webhooks (webhooks: POST /webhooks
 * alone, the token a provider's settings keep; docs/webhooks.md). The options are ingest's
 * defaults for what the token sends (ingest.h): the type of events without
 * one, the member an event's time is read from without "ts"; only a token
 * that may ingest takes them. And from the environment (EVENTS_TOKEN: one
 * token with every scope). A token is at least 16 characters. `admin` grants
 * every scope. Tokens are kept as keyed hashes and compared in constant time.
 */
#ifndef EVENTS_AUTH_H
#define EVENTS_AUTH_H

#include <stddef.h>
#include <stdio.h>

enum { AUTH_SCOPE_INGEST = 1, AUTH_SCOPE_QUERY = 2, AUTH_SCOPE_ADMIN = 4, AUTH_SCOPE_WEBHOOKS = 8 };

#define AUTH_TOKEN_MIN 16

typedef struct auth auth;

/* A token as a request sees it; valid as long as the auth it came from (no token is added later).
 */
typedef struct auth_token {
    const char *name;
    unsigned scopes;    /* admin expanded to all */
    const char *type;   /* type= of the tokens file, or NULL */
    const char *ts_key; /* ts_key= of the tokens file, or NULL */
} auth_token;

auth *auth_new(void);
void auth_free(auth *a);

/*
 * Adds the tokens of a tokens file. Returns 0, or -1 with a message naming the
 * file (and the line): a file that cannot be opened or read, is not a regular
 * file, holds no token, has a malformed line (an unknown option, a type or
 * ts_key that is not one, an option on a token without the ingest scope), or
 * repeats a token. warn is set
 * to a message ("" if none) when the file can be read by every user.
 */
int auth_load_file(auth *a, const char *path, char *warn, size_t warnlen, char *err, size_t errlen);

/*
 * Opens a file of secrets (what: "tokens file", …) at path for reading. NULL
 * with err naming it when it cannot be opened or is not a regular file; warn
 * is set ("" if not) when every user may read it. Also for webhooks.h's secrets.
 */
FILE *auth_open_secret_file(const char *what, const char *path, char *warn, size_t warnlen,
                            char *err, size_t errlen);

/* Adds one token. Returns 0, or -1 with a message (a token too short, or already added). */
int auth_add(auth *a, const char *name, const char *token, unsigned scopes, char *err,
             size_t errlen);

/* The same, with the token's ingest defaults (NULL: none; checked by the caller). */
int auth_add_with(auth *a, const char *name, const char *token, unsigned scopes, const char *type,
                  const char *ts_key, char *err, size_t errlen);

/* Parses "ingest,query" into scope bits; -1 on an unknown scope. */
int auth_parse_scopes(const char *s, unsigned *out);

/* Number of tokens: 0 means authentication is off. */
size_t auth_count(const auth *a);

/*
 * Checks an Authorization header value ("Bearer TOKEN"). Returns the token's
 * scopes (admin expanded to all), or 0 if the header is missing, malformed or
 * names no known token. *name is set to the token's name when known.
 */
unsigned auth_check(const auth *a, const char *header, const char **name);

/* The same, with the whole token: NULL if the header names no known token. */
const auth_token *auth_lookup(const auth *a, const char *header);

#endif

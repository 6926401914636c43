/*
 * origins.c - the Host check and CORS (origins.h).
 *
 * Names are compared without case, hosts without their port: the port a
 * browser puts in Host and Origin is the one in the page's URL, which says
 * nothing about who wrote the page.
 */
#include "origins.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct origins {
    int check_host; /* no tokens, or --allowed-hosts given */
    int any;        /* every origin may call: ACAO * */
    char **hosts;   /* --allowed-hosts, lowercase, without brackets */
    size_t nhosts;
    char **cors; /* --cors-origins, as given */
    size_t ncors;
};

/*
 * The host of a Host header value ("Name:8080", "[::1]:8080", "127.0.0.1")
 * into out, lowercase, without port or brackets. -1 if it is not one.
 */
static int host_part(const char *h, char *out, size_t cap)
{
    const char *start = h, *end, *port;
    if (*h == '[') {
        start = h + 1;
        if (!(end = strchr(start, ']'))) return -1;
        port = end + 1;
    } else {
        end = strchr(h, ':');
        if (end && strchr(end + 1, ':')) return -1; /* an IPv6 address needs brackets */
        if (!end) end = h + strlen(h);
        port = end;
    }
    if (*port && (*port != ':' || strspn(port + 1, "0123456789") != strlen(port + 1))) return -1;
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= cap) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)start[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == '@' || ch == '[' || ch == ']') return -1;
        out[i] = (char)tolower(ch);
    }
    out[n] = 0;
    return 0;
}

static int is_loopback_host(const char *h)
{
    size_t n = strlen(h);
    if (!strcmp(h, "localhost") || (n > 10 && !strcmp(h + n - 10, ".localhost"))) return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

/* "http[s]://host[:port]" with nothing after: an origin as browsers send it. */
static int is_origin(const char *s)
{
    const char *rest = !strncasecmp(s, "http://", 7)    ? s + 7
                       : !strncasecmp(s, "https://", 8) ? s + 8
                                                        : NULL;
    char host[256];
    return rest && host_part(rest, host, sizeof host) == 0;
}

/* Splits a comma-separated list into *v (strings owned by the list). -1 with err on a bad entry. */
static int parse_list(const char *flag, const char *list, int cors, char ***v, size_t *n, char *err,
                      size_t errlen)
{
    *v = NULL;
    *n = 0;
    if (!list || !*list) return 0;
    size_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    if (!(*v = calloc(cap, sizeof **v))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        char item[256], host[256];
        int ok = len > 0 && len < sizeof item;
        if (ok) {
            memcpy(item, p, len);
            item[len] = 0;
            /* a host without a port: "name", "1.2.3.4" or "[::1]" */
            ok = cors ? (!strcmp(item, "*") || is_origin(item))
                      : host_part(item, host, sizeof host) == 0 &&
                            !strchr(item[0] == '[' ? strchr(item, ']') : item, ':');
        }
        if (!ok) {
            snprintf(err, errlen,
                     cors ? "%s: \"%.*s\" is not an origin (http://host or https://host:port, "
                            "or *)"
                          : "%s: \"%.*s\" is not a host name or address (without a port)",
                     flag, (int)(len < 200 ? len : 200), p);
            return -1;
        }
        if (!((*v)[(*n)++] = strdup(cors ? item : host))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        p += strcspn(p, ",");
        if (*p == ',') p++;
    }
    return 0;
}

origins *origins_new(const char *hosts, const char *cors, int tokens, char *err, size_t errlen)
{
    origins *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_list("--allowed-hosts", hosts, 0, &o->hosts, &o->nhosts, err, errlen) ||
        parse_list("--cors-origins", cors, 1, &o->cors, &o->ncors, err, errlen)) {
        origins_free(o);
        return NULL;
    }
    o->check_host = !tokens || o->nhosts > 0;
    o->any = tokens && o->ncors == 0;
    for (size_t i = 0; i < o->ncors; i++)
        if (!strcmp(o->cors[i], "*")) o->any = 1;
    return o;
}

void origins_free(origins *o)
{
    if (!o) return;
    for (size_t i = 0; i < o->nhosts; i++) free(o->hosts[i]);
    for (size_t i = 0; i < o->ncors; i++) free(o->cors[i]);
    free(o->hosts);
    free(o->cors);
    free(o);
}

int origins_any(const origins *o)
{
    return o->any;
}

int origins_host_ok(const origins *o, const char *host)
{
    if (!o->check_host || !host) return 1;
    char h[256];
    if (host_part(host, h, sizeof h)) return 0;
    if (is_loopback_host(h)) return 1;
    for (size_t i = 0; i < o->nhosts; i++)
        if (!strcmp(o->hosts[i], h)) return 1;
    return 0;
}

/* Origin is "http://" or "https://" followed by exactly the Host header. */
static int same_origin(const char *origin, const char *host)
{
    if (!host) return 0;
    const char *rest = !strncasecmp(origin, "http://", 7)    ? origin + 7
                       : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                             : NULL;
    return rest && !strcasecmp(rest, host);
}

const char *origins_allow(const origins *o, const char *origin, const char *host, int *refused)
{
    *refused = 0;
    if (o->any) return "*";
    if (!origin) return NULL;
    for (size_t i = 0; i < o->ncors; i++)
        if (!strcasecmp(o->cors[i], origin)) return origin;
    if (same_origin(origin, host)) return NULL;
    *refused = 1;
    return NULL;
}

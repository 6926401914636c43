/*
 * web.h - the dashboard's files, embedded into the binary at build time
 * (web/embed.c generates web_assets.c from web/ and the fetched uPlot).
 *
 *   GET /                  web/index.html
 *   GET /assets/NAME       web/app.js, web/style.css, uPlot's script and style
 *
 * The files hold no data (every view asks POST /query with the user's token),
 * so they are served without a token, with an ETag and `Cache-Control: no-cache`.
 */
#ifndef EVENTS_WEB_H
#define EVENTS_WEB_H

#include <stddef.h>

typedef struct web_asset {
    const char *path; /* "/", "/assets/app.js" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted */
} web_asset;

extern const web_asset WEB_ASSETS[];
extern const size_t WEB_ASSETS_COUNT;

/* The asset at path, or NULL. */
static inline const web_asset *web_find(const char *path)
{
    for (size_t i = 0; i < WEB_ASSETS_COUNT; i++)
        if (!__builtin_strcmp(WEB_ASSETS[i].path, path)) return &WEB_ASSETS[i];
    return 0;
}

#endif

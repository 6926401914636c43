#!/bin/sh
# run.sh - the dashboard's browser test: headless Chromium (Debian's package,
# installed by scripts/bootstrap --test) driven by playwright-core, which this
# script installs from the npm registry, pinned, into the build directory.
#
#   tests/browser/run.sh EVENTS_BIN WORK_DIR [node script args...]
#
# SCRIPT names the test script of this directory to run (default dashboard.mjs;
# cross_origin.mjs: what other web pages can do with a server without tokens).
#
# Screenshots of each view and the views' load times go to WORK_DIR/artifacts.
set -eu
bin=$1
work=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
version=1.57.0
chromium=$(command -v chromium || true)
[ -n "$chromium" ] || { echo "run.sh: chromium is missing: scripts/bootstrap --test installs it" >&2; exit 1; }
mkdir -p "$work/artifacts"
if [ "$(cat "$work/node_modules/playwright-core/package.json" 2>/dev/null | sed -n 's/.*"version": "\([^"]*\)".*/\1/p')" != "$version" ]; then
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save "playwright-core@$version" >/dev/null)
fi
script=${SCRIPT:-dashboard.mjs}
cp "$src/$script" "$src/serve.mjs" "$work/"
exec node "$work/$script" "$bin" "$chromium" "$work" "$@"

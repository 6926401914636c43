#!/bin/sh
# run.sh - OpenTelemetry's own JavaScript SDK against `events serve`: the
# log exporters (OTLP/HTTP in JSON and in protobuf) from the npm registry,
# pinned, installed by this script into the build directory.
#
#   tests/otlp/run.sh EVENTS_BIN WORK_DIR
set -eu
bin=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)
# sdk-logs 0.223.1 is the last line that runs on Node.js 20 (later ones ask for 22.15)
packages="@opentelemetry/api@1.9.0 @opentelemetry/api-logs@0.223.1 @opentelemetry/sdk-logs@0.223.1
  @opentelemetry/resources@2.12.1 @opentelemetry/exporter-logs-otlp-http@0.223.1
  @opentelemetry/exporter-logs-otlp-proto@0.223.1"
mkdir -p "$work"
stamp="$work/node_modules/.events-otlp-packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "$(echo $packages)" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo $packages >"$stamp"
fi
cp "$src/sdk_logs.mjs" "$src/../node/checks.mjs" "$work/"
exec node "$work/sdk_logs.mjs" "$bin" "$work"

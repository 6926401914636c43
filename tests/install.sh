#!/bin/sh
# make install, into a scratch prefix: the header, both libraries, events.pc
# and the binary land where pkg-config and a compiler find them, and
# examples/chatroom.c builds against them, shared and static.
set -eu
build=$1 src=$2
prefix=$(mktemp -d "${TMPDIR:-/tmp}/events-install-XXXXXX")
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/events include/events.h include/events_version.h lib/libevents.a lib/libevents.so lib/libduckdb.so lib/pkgconfig/events.pc; do
    test -e "$prefix/$f" || { echo "install: $f is missing" >&2; exit 1; }
done
"$prefix/bin/events" version >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
test "$(pkg-config --modversion events)" = "$(sed -n 's/^project(events VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")"
cc -Wall -Wextra -Werror -o "$prefix/chatroom-shared" "$src/examples/chatroom.c" \
    $(pkg-config --cflags --libs events sqlite3) -Wl,-rpath,"$prefix/lib"
cc -Wall -Wextra -Werror -o "$prefix/chatroom-static" "$src/examples/chatroom.c" \
    $(pkg-config --cflags events) "$prefix/lib/libevents.a" $(pkg-config --libs sqlite3 libcurl zlib) -lpthread
ldd "$prefix/chatroom-shared" | grep -q "$prefix/lib/libevents.so"
! ldd "$prefix/chatroom-static" | grep -q libevents
# the shared library exports the API and nothing else
bad=$(nm -D --defined-only "$prefix/lib/libevents.so" | awk '$2 == "T" && $3 !~ /^events_/ {print $3}')
test -z "$bad" || { echo "install: libevents.so exports $bad" >&2; exit 1; }
echo "install: ok ($prefix)"

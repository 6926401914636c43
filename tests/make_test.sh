#!/bin/sh
# make_test.sh - `make` on a machine that lacks what the build needs, then on one
# that has it: a failed configure says what to run and leaves nothing behind that
# stops the next `make`.
#
#   tests/make_test.sh SOURCE_DIR
#
# Hermetic: what is missing is faked with small wrappers early on PATH (dpkg-query
# that does not know libmicrohttpd-dev; pkg-config that cannot find libmicrohttpd),
# nothing is installed, the build directories are temporary, and the wrapper of
# cmake builds one small target so that the test stays fast.
set -eu
src=$(cd "$1" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/events-make-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $1"; }
fail() {
    echo "FAIL $1"
    [ -f "$tmp/out" ] && sed 's/^/     | /' "$tmp/out"
    failures=$((failures + 1))
}

real_cmake=$(command -v cmake)
real_pkg_config=$(command -v pkg-config)
real_dpkg_query=$(command -v dpkg-query || true)
mkdir "$tmp/small" "$tmp/no-dpkg" "$tmp/no-pkg-config"

# cmake itself, except that --build makes only the event model's library
cat >"$tmp/small/cmake" <<EOF
#!/bin/sh
if [ "\${1:-}" = --build ]; then
    dir=\$2
    shift 2
    exec "$real_cmake" --build "\$dir" --target events_model "\$@"
fi
exec "$real_cmake" "\$@"
EOF
# dpkg-query, as on a machine where libmicrohttpd-dev is not installed
cat >"$tmp/no-dpkg/dpkg-query" <<EOF
#!/bin/sh
for a; do [ "\$a" = libmicrohttpd-dev ] && exit 1; done
exec "$real_dpkg_query" "\$@"
EOF
# pkg-config, as if libmicrohttpd's .pc file were missing (what cmake finds out)
cat >"$tmp/no-pkg-config/pkg-config" <<EOF
#!/bin/sh
for a; do case \$a in libmicrohttpd*) exit 1 ;; esac; done
exec "$real_pkg_config" "\$@"
EOF
chmod +x "$tmp/small/cmake" "$tmp/no-dpkg/dpkg-query" "$tmp/no-pkg-config/pkg-config"

mk() { # PATH_PREFIX BUILD_DIR: make build, output in $tmp/out; returns make's status
    PATH="$1:$PATH" make -C "$src" --no-print-directory BUILD="$2" JOBS=2 build >"$tmp/out" 2>&1
}

# 1. A package is missing: said before anything is configured, with what to run.
b=$tmp/build1
if [ -n "$real_dpkg_query" ]; then
    if mk "$tmp/no-dpkg:$tmp/small" "$b"; then
        fail "make fails when libmicrohttpd-dev is missing"
    else
        ok "make fails when libmicrohttpd-dev is missing"
    fi
    grep -q 'missing packages: libmicrohttpd-dev' "$tmp/out" && grep -q 'make bootstrap' "$tmp/out" &&
        ok "it names the package and says to run make bootstrap" ||
        fail "it names the package and says to run make bootstrap"
    [ ! -e "$b/CMakeCache.txt" ] && ok "nothing was configured" || fail "nothing was configured"
    if mk "$tmp/small" "$b"; then
        ok "once the package is there, make builds"
    else
        fail "once the package is there, make builds"
    fi
else
    echo "skip the package check: no dpkg-query here"
fi

# 2. The configure step itself fails (cmake cannot find a library): cmake's reason
# and what to run are shown, and the next make configures afresh and builds.
b=$tmp/build2
if mk "$tmp/no-pkg-config:$tmp/small" "$b"; then
    fail "make fails when cmake cannot find libmicrohttpd"
else
    ok "make fails when cmake cannot find libmicrohttpd"
fi
grep -q 'libmicrohttpd' "$tmp/out" && grep -q 'make bootstrap' "$tmp/out" &&
    ok "cmake's reason is shown with what to run" || fail "cmake's reason is shown with what to run"
[ ! -e "$b/CMakeCache.txt" ] && ok "the failed configure left no cache" ||
    fail "the failed configure left no cache"
if mk "$tmp/small" "$b"; then
    ok "the next make configures and builds"
else
    fail "the next make configures and builds"
fi
[ -f "$b/Makefile" ] && ok "the build directory has its Makefile" ||
    fail "the build directory has its Makefile"

# 3. A build directory an earlier failed configure left half made (a cache, no
# Makefile: what older versions of the Makefile kept) does not stop make either.
b=$tmp/build3
PATH="$tmp/no-pkg-config:$PATH" "$real_cmake" -S "$src" -B "$b" >/dev/null 2>&1 || true
[ -f "$b/CMakeCache.txt" ] && [ ! -f "$b/Makefile" ] || echo "note: cmake left no half-made directory"
if mk "$tmp/small" "$b"; then
    ok "make builds in a half-made build directory"
else
    fail "make builds in a half-made build directory"
fi

[ "$failures" -eq 0 ] || { echo "$failures failed"; exit 1; }

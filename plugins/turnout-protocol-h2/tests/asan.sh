#!/usr/bin/env bash
# Build the nghttp2 shim with AddressSanitizer into a temporary directory and run the codec
# tests (test_codec_*.py, test_ngh2_comparison.py) against that build (the sockets tests too
# unless ASAN_SKIP_SOCKETS=1).
#
#   plugins/turnout-protocol-h2/tests/asan.sh [PYTEST ARGS]
#
# Python itself is not built with ASan: libasan is LD_PRELOADed. Memory errors abort the run.
# Leak detection is on: CPython leaves memory behind at exit, so a leak report fails the run
# only when an allocation stack goes through the shim (_nghttp2.c) or libnghttp2; CPython's
# own leaks are counted and ignored. ASAN_LEAKS=0 turns leak detection off.
set -euo pipefail
plugin=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$plugin/../.." && pwd)
PY=${PYTHON:-$root/.venv/bin/python}
tmp=$(mktemp -d -t turnout-h2-asan.XXXXXX)

# ASan reports go to files (pytest captures fd 2 and an abort loses it), judged at exit
report() {
  local rc=$? f
  for f in "$tmp"/asan-report.*; do
    [ -f "$f" ] || continue
    if grep -q "ERROR: AddressSanitizer" "$f"; then
      echo "asan.sh: AddressSanitizer error ($f):" >&2
      cat "$f" >&2
      rc=1
    elif grep -q "ERROR: LeakSanitizer" "$f"; then
      # one leak record = the lines from "... leak of" to the next blank line
      if awk '/leak of/{rec=1; buf=""} rec{buf=buf $0 "\n"} /^$/{if (rec && buf ~ /_nghttp2\.c|libnghttp2/) {printf "%s", buf; found=1} rec=0} END{exit !found}' "$f" >"$tmp/ours"; then
        echo "asan.sh: leaks allocated by the shim or libnghttp2:" >&2
        cat "$tmp/ours" >&2
        rc=1
      else
        echo "asan.sh: no leak from the shim or libnghttp2 ($(grep -c 'leak of' "$f") CPython leak records at exit ignored: $(grep SUMMARY "$f" | sed 's/^SUMMARY: AddressSanitizer: //'))"
      fi
    fi
  done
  rm -rf "$tmp"
  exit $rc
}
trap report EXIT

cp -r "$plugin/src/turnout_protocol_h2" "$tmp/"
find "$tmp" -name '*.so' -delete
(
  cd "$plugin"
  TURNOUT_H2_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" \
    TURNOUT_H2_LDFLAGS="-fsanitize=address" \
    "$PY" -c 'import build_nghttp2 as b; b.ffibuilder.compile(tmpdir="'"$tmp"'")' >/dev/null
)
libasan=$(${CC:-gcc} -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "asan.sh: libasan not found ($libasan)" >&2; exit 2; }
export LD_PRELOAD=$libasan
export PYTHONPATH=$tmp${PYTHONPATH:+:$PYTHONPATH}
# no leak check (nor report file) for the small checks below
so=$(ASAN_OPTIONS=detect_leaks=0 "$PY" -c 'import turnout_protocol_h2.codec._nghttp2 as m; print(m.__file__)')
case "$so" in
  "$tmp"/*) echo "asan.sh: testing $so (built with -fsanitize=address)" ;;
  *) echo "asan.sh: the ASan build was not picked up ($so)" >&2; exit 2 ;;
esac
syms=$(nm -D "$so")
grep -q __asan_ <<<"$syms" || { echo "asan.sh: $so is not instrumented" >&2; exit 2; }
# exitcode=0: a leak report alone does not fail pytest's exit status; report() judges it
export ASAN_OPTIONS=detect_leaks=${ASAN_LEAKS:-1}:exitcode=0:halt_on_error=1:abort_on_error=1:log_path=$tmp/asan-report
# the codec's tests (the router's start turnout, nginx, curl and grpcio as subprocesses, which
# inherit LD_PRELOAD: programs not built for it hang or crash under libasan)
args=(-q -p no:cacheprovider "$plugin"/tests/test_codec_*.py "$plugin/tests/test_ngh2_comparison.py")
[ "${ASAN_SKIP_SOCKETS:-0}" = 1 ] && args+=(-m "not integration")
"$PY" -m pytest "${args[@]}" "$@"

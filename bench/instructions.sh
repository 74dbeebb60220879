#!/usr/bin/env bash
# Instructions per proxied request of the HTTP data path (valgrind callgrind, noise-free):
# the difference between two runs of bench/micro_http.py with different request counts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PY" bench/micro_http.py "$1" 2>&1 | awk '/Collected/{print $4}'; }
a=$(count 1000); b=$(count 3000)
echo "instructions per request: $(( (b - a) / 2000 ))"

#!/usr/bin/env bash
# Runs the test suite against the C core built with AddressSanitizer and UBSan.
# The sanitizer runtimes must come first in the process, hence LD_PRELOAD; leak
# detection is off because CPython itself keeps memory until exit.  pytest
# captures only Python-level output (--capture=sys): a sanitizer writes its
# report to file descriptor 2 and then stops the process, and fd-level capture
# would take the report down with it.
# Usage: tools/sanitize.sh [pytest args...]   (restores the normal build afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

rebuild_normal() {
    rm -f engine/_native*.so
    "$PY" setup.py -q build_ext --inplace --force >/dev/null
}
trap rebuild_normal EXIT

rm -f engine/_native*.so
CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1" \
LDFLAGS="-fsanitize=address,undefined" \
    "$PY" setup.py -q build_ext --inplace --force >/dev/null

LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
KVENGINE_SANITIZED=1 \
    "$PY" -m pytest -q -p no:cacheprovider --capture=sys "$@"

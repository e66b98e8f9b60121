#!/usr/bin/env bash
# Builds the libFuzzer harnesses of csrc/fuzz with clang (-fsanitize=fuzzer,address,undefined)
# and runs each over a seed corpus made from real stores.  Exits non-zero on any finding
# (crash, sanitizer report, leak, timeout, out-of-memory); the reproducer is kept in $FUZZ_OUT.
#
# Usage: tools/fuzz_smoke.sh                     # CI smoke: FUZZ_SECONDS (default 10) per target
#        FUZZ_SECONDS=3600 tools/fuzz_smoke.sh   # a long run
# Installs clang with apt-get when it is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-10}
OUT=${FUZZ_OUT:-$(mktemp -d /tmp/kvfuzz-XXXXXX)}
TARGETS="record segment open"

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: installing clang"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # libFuzzer's runtime (libclang-rt) is only a recommendation of clang: ask for it.
    apt-get install -y -qq --install-recommends clang >/dev/null
fi

mkdir -p "$OUT/bin"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc"
FLAGS="$FLAGS -DKV_PACKAGE_VERSION=\"fuzz\" -std=c11 -pthread"
CORE=$(ls csrc/kv_*.c)
for t in $TARGETS; do
    clang $FLAGS "csrc/fuzz/fuzz_$t.c" $CORE -o "$OUT/bin/fuzz_$t"
done

# Seeds from real stores; the committed engine build writes them.
"$PY" tools/make_seed_corpus.py "$OUT/seeds" >/dev/null

status=0
# Every input that once made a harness fail is replayed first (the fuzzing regression tests).
for t in $TARGETS; do
    if compgen -G "csrc/fuzz/regressions/$t/*" >/dev/null; then
        if ! ASAN_OPTIONS=detect_leaks=1 "$OUT/bin/fuzz_$t" csrc/fuzz/regressions/$t/* \
            >"$OUT/regressions_$t.log" 2>&1; then
            echo "fuzz_$t: a regression input fails again (log $OUT/regressions_$t.log)"
            tail -40 "$OUT/regressions_$t.log"
            status=1
        fi
    fi
done
for t in $TARGETS; do
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    log="$OUT/fuzz_$t.log"
    if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$OUT/bin/fuzz_$t" "$OUT/corpus/$t" "$OUT/seeds/$t" \
            -max_total_time="$SECONDS_PER_TARGET" -timeout=25 -rss_limit_mb=2560 \
            -malloc_limit_mb=64 -max_len=65536 -print_final_stats=1 \
            -artifact_prefix="$OUT/crashes/$t/" >"$log" 2>&1; then
        echo "fuzz_$t: FINDING (log $log, reproducer in $OUT/crashes/$t/)"
        tail -40 "$log"
        status=1
        continue
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    echo "fuzz_$t: ok, $execs executions in ${SECONDS_PER_TARGET}s, $cov edges"
done
if [ "$status" = 0 ] && [ -z "${FUZZ_OUT:-}" ]; then
    rm -rf "$OUT"
fi
exit $status

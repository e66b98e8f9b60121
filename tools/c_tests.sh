#!/usr/bin/env bash
# Builds and runs the C-level unit tests (csrc/tests/*.c) under ASan and UBSan;
# the record cache, shared lock-free between reader threads, under TSan as well.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CC=${CC:-gcc}
FLAGS="-std=c11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=undefined -Icsrc"
# Each test links the C core sources it exercises.
$CC $FLAGS csrc/kv_hash.c csrc/tests/test_hash_vectors.c -o "$out/test_hash_vectors"
"$out/test_hash_vectors"
$CC $FLAGS csrc/kv_hash.c csrc/kv_index.c csrc/tests/test_index.c -o "$out/test_index"
ASAN_OPTIONS=detect_leaks=1 "$out/test_index" ${INDEX_TEST_ARGS:-}
$CC $FLAGS -pthread csrc/kv_cache.c csrc/tests/test_cache.c -o "$out/test_cache"
ASAN_OPTIONS=detect_leaks=1 "$out/test_cache" ${CACHE_TEST_ARGS:-}
$CC -std=c11 -O1 -g -Wall -Wextra -Werror -fsanitize=thread -pthread -Icsrc \
    csrc/kv_cache.c csrc/tests/test_cache.c -o "$out/test_cache_tsan"
TSAN_OPTIONS=halt_on_error=1 "$out/test_cache_tsan" 50000
echo "c tests: ok"

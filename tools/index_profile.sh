#!/usr/bin/env bash
# Per-key memory breakdown and hash probe lengths of the C keydir at the given
# store sizes (csrc/bench/index_profile.c).  Usage: tools/index_profile.sh 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CC:-gcc} -std=c11 -O2 -Wall -Wextra -Werror -Icsrc csrc/kv_hash.c csrc/kv_index.c \
    csrc/bench/index_profile.c -o "$out/index_profile"
"$out/index_profile" "${@:-100000 1000000}"

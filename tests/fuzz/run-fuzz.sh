#!/usr/bin/env bash
# run-fuzz.sh - builds the fuzz targets with clang + libFuzzer (and ASan,
# UBSan) in build-fuzz/ and runs each for a while, starting from its corpus
# in tests/fuzz/corpus/.  A crash fails the run and leaves the input that
# caused it in build-fuzz/.
#
#   tests/fuzz/run-fuzz.sh [SECONDS_PER_TARGET]   (default 20)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
seconds=${1:-20}
builddir=build-fuzz

if ! command -v clang >/dev/null; then
    echo "run-fuzz: clang is not installed: skipping the fuzz run" >&2
    exit 0
fi
if [[ ! -f $builddir/meson-private/coredata.dat ]]; then
    CC=clang meson setup "$builddir" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false >/dev/null
fi
ninja -C "$builddir" tests/fuzz_engine tests/fuzz_hello tests/fuzz_hello_join tests/fuzz_virtqueue tests/fuzz_ml_frame tests/fuzz_host_nodes \
    >/dev/null

for target in engine hello hello_join virtqueue ml_frame host_nodes; do
    work=$(mktemp -d)
    cp tests/fuzz/corpus/$target/* "$work/"
    echo "run-fuzz: fuzz_$target for ${seconds}s"
    (cd "$builddir" && ./tests/fuzz_$target -max_total_time="$seconds" -max_len=65536 \
        -print_final_stats=1 "$work" 2>&1 | grep -E "^(stat::number_of_executed_units|==|SUMMARY)" || true)
    rm -rf "$work"
    ls "$builddir"/crash-* "$builddir"/leak-* "$builddir"/timeout-* >/dev/null 2>&1 &&
        { echo "run-fuzz: fuzz_$target found a failing input (see $builddir/)" >&2; exit 1; }
done
echo "run-fuzz: no failures"

#!/usr/bin/env bash
# Builds the codec fuzzer with clang's libFuzzer and sanitizers and runs it for a bounded time.
# Crashes found are kept as regression inputs in corpus/ (libFuzzer writes crash-* files here first).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A 1 MB value limit: pipelines of repeated encodings reach it in a few steps instead of gigabytes.
clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc \
	-DMEXT_MAX_VALUE_BYTES=1048576 \
	test/fuzz/codec_fuzz.cpp src/core/codec.cpp -o "$out/codec_fuzz"
mkdir -p "$out/corpus"
cp test/fuzz/corpus/* "$out/corpus/"
"$out/codec_fuzz" -max_total_time="$seconds" -max_len=4096 -artifact_prefix=test/fuzz/corpus/crash- \
	-print_final_stats=1 "$out/corpus" 2>&1 | tail -15

#!/usr/bin/env bash
# scripts/bench.sh — run the Go benchmarks and summarise them with benchstat.
#
# Usage: scripts/bench.sh [BENCH-regexp] [count]
#
# Every benchmark runs `count` times (default 6); benchstat prints the median
# and its spread for each, including the allocation figures. Raw results are
# kept in bench.out. Benchmarks that need PostgreSQL find it as the tests do
# (TIDEMARK_TEST_DATABASE_URL, else 127.0.0.1:5432) and are skipped without
# one. Compare runs only within one invocation: absolute times on shared
# machines drift, ratios against a baseline measured in the same run do not.
set -euo pipefail
cd "$(dirname "$0")/.."

bench="${1:-.}"
count="${2:-6}"
readonly BENCHSTAT='golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da'

go test -run '^$' -bench "$bench" -benchmem -count "$count" -timeout 30m ./... | tee bench.out
echo
go run "$BENCHSTAT" bench.out

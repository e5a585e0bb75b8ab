#!/usr/bin/env bash
# Runs every benchmark: each starts its own redis-server (or cluster) on
# loopback, compares its sides in the same run and prints markdown tables
# (the figures in BENCHMARKS.md come from this); `regress` is the criterion
# target, which prints criterion's report instead. Then callgrind counts
# instructions per call (scripts/instructions.sh), and one table gathers
# every bench's verdicts against its targets.
# The write-behind benchmark needs PostgreSQL (scripts/install-postgres.sh);
# without one on 127.0.0.1:5432 it is skipped, and the closing table says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-redis.sh >/dev/null

summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT
export BENCH_SUMMARY="$summary"

machine="$(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}'), $(redis-server --version | cut -d' ' -f3), $(rustc --version)"
echo "machine: $machine"
started=$(date +%s)
skipped=()
for bench in hit_path miss_path regress near_cache cluster_hit stampede limits write_behind; do
    echo
    echo "## $bench"
    echo
    if [ "$bench" = write_behind ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
        echo "(skipped: no PostgreSQL on 127.0.0.1:5432; scripts/install-postgres.sh starts one)"
        skipped+=("$bench")
        continue
    fi
    cargo bench -q -p cache-benches --features bincode --bench "$bench"
done

echo
echo "## instructions (callgrind)"
echo
bash scripts/instructions.sh

echo
echo "## Summary"
echo
echo "machine: $machine; suite took $(( $(date +%s) - started )) s"
echo
echo "| bench | measure | result | target | met? |"
echo "|---|---|---|---|---|"
cat "$summary"
for bench in "${skipped[@]}"; do
    echo "| $bench | (skipped) | | | |"
done

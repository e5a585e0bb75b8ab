#!/usr/bin/env bash
# Runs every benchmark: each starts its own redis-server (or cluster) on
# loopback and prints markdown tables (figures in BENCHMARKS.md come from
# this); `regress` is the criterion target, which prints criterion's report
# instead.
# The write-behind benchmark needs PostgreSQL (scripts/install-postgres.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-redis.sh >/dev/null
echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(redis-server --version | cut -d' ' -f3)"
for bench in hit_path miss_path regress near_cache cluster_hit stampede limits write_behind; do
    echo
    echo "## $bench"
    echo
    cargo bench -q -p cache-benches --features bincode --bench "$bench"
done

#!/usr/bin/env bash
# Mutation testing of the guarantee-critical code with cargo-mutants (see
# TESTING.md): every mutant of the read path, leases and flights,
# invalidation, write-behind, keys and the stored envelope is built and run
# against the fast suites that cover them (unit tests, the in-process store
# and a single redis-server; no cluster, no soak, no trybuild).
#
#   bash scripts/mutants.sh                 # every file below
#   MUTANT_FILES="cache-runtime/src/key.rs" bash scripts/mutants.sh
#   bash scripts/mutants.sh --shard 0/4     # extra arguments go to cargo-mutants
#
# Installs cargo-mutants from crates.io when it is missing. Results land in
# mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt,
# unviable.txt). Not part of CI: it takes about an hour on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MUTANTS_VERSION="27.1.0"
if ! cargo mutants --version 2>/dev/null | grep -q "$MUTANTS_VERSION"; then
    cargo install --locked "cargo-mutants@$MUTANTS_VERSION"
fi
bash scripts/install-redis.sh
bash scripts/install-postgres.sh

FILES="${MUTANT_FILES:-cache-runtime/src/read.rs cache-runtime/src/lead.rs cache-runtime/src/flight.rs cache-runtime/src/invalidate.rs cache-runtime/src/behind.rs cache-runtime/src/key.rs cache-runtime/src/envelope.rs}"
file_args=()
for f in $FILES; do
    file_args+=(--file "$f")
done

SUITES=(decode_allocations key_rendering conformance round_trips stampede refresh
    background outage write_strategies write_behind_attempts coalescing near_cache
    flusher_connection observability races)
test_args=(--lib)
for t in "${SUITES[@]}"; do
    test_args+=(--test "$t")
done

# The suites leave the cluster out (and `--skip cluster` drops the tests that
# need one). Builds share one target directory outside the copied tree, and
# the `mutants` profile has no debug info, so a mutant links in seconds.
export CACHE_TESTS_NO_CLUSTER=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/mutants}"

# The baseline: the unmutated tree passes these suites. (Run here rather
# than by cargo-mutants, whose baseline tests only the mutated package.)
echo "---- baseline"
cargo test --workspace --profile mutants "${test_args[@]}" -- --skip cluster

echo "---- mutants"
cargo mutants --no-config --baseline=skip \
    "${file_args[@]}" \
    --test-workspace=true \
    --profile mutants \
    --timeout 120 \
    "$@" \
    -- "${test_args[@]}" -- --skip cluster

#!/usr/bin/env bash
# The project's test command.
#
# Installs redis-server when it is missing (scripts/install-redis.sh), then
# runs every test of the workspace, then the codec unit tests, the
# decode-allocation test and the `codec = "bincode"` test again with the
# optional bincode codec. The tests start their own redis-server processes on
# free loopback ports; no system Redis is needed. The write-behind crash test
# uses PostgreSQL on 127.0.0.1:5432 (scripts/install-postgres.sh sets one up).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh
bash scripts/install-postgres.sh

echo
echo "---- cargo test --workspace"
cargo test --workspace

echo
echo "---- cargo test -p cache-runtime --features bincode --lib --test decode_allocations --test bincode_codec"
cargo test -p cache-runtime --features bincode --lib --test decode_allocations --test bincode_codec

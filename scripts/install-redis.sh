#!/usr/bin/env bash
# Makes sure `redis-server` and `redis-cli` (which joins the harness's
# clusters) are available for the test harness.
#
# When `$REDIS_SERVER` (default `redis-server`) and `$REDIS_CLI` (default
# `redis-cli`) are already runnable, this only prints the server's version.
# Otherwise it installs Debian's `redis-server` package (which also brings
# `redis-cli`), through sudo when not root. The harness
# starts its own servers on free loopback ports; it never uses a system
# Redis service that the package may start.
set -euo pipefail

bin="${REDIS_SERVER:-redis-server}"
cli="${REDIS_CLI:-redis-cli}"

if command -v "$bin" >/dev/null 2>&1 && command -v "$cli" >/dev/null 2>&1; then
    echo "redis-server present: $("$bin" --version)"
    exit 0
fi

echo "redis-server or redis-cli not found: installing Debian's redis-server package"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get is not available; install redis-server (7 or newer) by hand" >&2
    echo "       or point REDIS_SERVER at a redis-server binary" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "error: not root and sudo is missing; cannot install redis-server" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y redis-server

if ! command -v "$bin" >/dev/null 2>&1; then
    echo "error: redis-server is still not runnable as '$bin' after the install" >&2
    exit 1
fi
if ! command -v "$cli" >/dev/null 2>&1; then
    echo "error: redis-cli is still not runnable as '$cli' after the install" >&2
    exit 1
fi
echo "redis-server installed: $("$bin" --version)"

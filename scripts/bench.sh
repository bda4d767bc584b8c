#!/usr/bin/env bash
# Runs the artisync benchmark suite (see BENCHMARKS.md).
#
#   scripts/bench.sh [--quick] [any other `bench` options, e.g. --out FILE]
#
# Installs what the suite needs when it is missing (wrk, nginx-light, etcd;
# Debian/Ubuntu, as root or with sudo), builds every binary in release mode
# and runs `bench all`. PostgreSQL and RabbitMQ must be running locally (or
# TEST_DATABASE_URL / TEST_AMQP_URL set). --quick runs every scenario small,
# as CI does; it exits non-zero only if a scenario could not run.
set -euo pipefail

cd "$(dirname "$0")/.."

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)

if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "bench.sh: installing ${need[*]}"
        $sudo apt-get update -q
        # Do not let the packages start system services we do not use.
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
    else
        echo "bench.sh: please install ${need[*]} (no apt-get here); continuing without them" >&2
    fi
fi

echo "bench.sh: building (release)"
cargo build --release --workspace --bins

target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/bench" all "$@"

#!/usr/bin/env bash
# Runs the whole test suite against the real PostgreSQL, MariaDB and RabbitMQ,
# starting them first if they are not running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# The end-to-end tests start the real binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace "$@"

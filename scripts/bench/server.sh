# Sourced by the bench scripts: starts a release `hurry` server on a fresh database.
# bench_server_start STORE PORT: STORE is sqlite or postgres; sets $work (a temporary folder)
# and $server (the pid), stops the server and drops the database on exit.
# shellcheck source=scripts/services.sh
source scripts/services.sh

bench_server_start() {
  local store=$1
  bench_port=$2
  bench_store=$store
  work=$(mktemp -d /tmp/hurry-bench.XXXXXX)
  case "$store" in
    postgres)
      ensure_postgres
      bench_db="hurry_bench_$$"
      psql "$DATABASE_URL" -qc "CREATE DATABASE $bench_db" >/dev/null
      bench_url="${DATABASE_URL%/*}/$bench_db"
      ;;
    sqlite) bench_url="sqlite://$work/hurry.db" ;;
    *) echo "store must be sqlite or postgres" >&2; exit 2 ;;
  esac
  cargo build --release -q -p hurry-api --features hurry-api/baseline
  HURRY__DATABASE__URL=$bench_url HURRY__HTTP__LISTEN=127.0.0.1:$bench_port \
    HURRY__ADMIN__EMAIL=bench@hurry.test HURRY__ADMIN__PASSWORD=bench-password \
    HURRY__AUTH__ARGON2_MEMORY_KIB=64 HURRY__AUTH__ARGON2_ITERATIONS=1 \
    HURRY__RATE_LIMIT__ENABLED=false HURRY__AUTH__REQUIRE_EMAIL_VERIFICATION=false HURRY__LOG__FILTER=warn \
    target/release/hurry serve >"$work/server.log" 2>&1 &
  server=$!
  trap bench_server_stop EXIT
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$bench_port/healthz" >/dev/null && break; sleep 0.1; done
}

bench_server_stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ "$bench_store" = postgres ]; then
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" >/dev/null
  fi
  rm -rf "$work"
}

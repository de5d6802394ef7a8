#!/usr/bin/env bash
# The whole stack on one machine against a local PostgreSQL and Redis: api (uvicorn, several workers), market (the
# same API in a process of its own, on its own port, for the TSO's aFRR setpoints, so that OCPI intake bursts never
# queue in front of them), one Celery worker, Celery beat (exactly one) and one dispatcher, each a `vpp` subcommand
# with settings from the environment.
#
#   deploy/local/stack.sh start    create the database if missing, migrate, start, wait until healthy
#   deploy/local/stack.sh status   one line per process; exit 0 only when all run
#   deploy/local/stack.sh stop     SIGTERM each process, wait for it, report exit codes (exit 1 if one was not 0)
#
# Everything lands in the run directory $VPP_STACK_DIR (default var/stack): <name>.pid, <name>.exit and
# logs/<name>.log per process, and secrets.env (generated once, mode 600) when VPP_SECRET_KEY and
# VPP_UFTP_SIGNING_KEY are not given. Knobs (environment, defaults in brackets):
#   VPP_DATABASE_URL [postgresql+psycopg://postgres@127.0.0.1:5432/vpp]   VPP_REDIS_URL [redis://127.0.0.1:6379/0]
#   VPP_STACK_API_PORT [8000]  VPP_STACK_API_WORKERS [2]  VPP_STACK_WORKER_METRICS_PORT [9102]
#   VPP_STACK_MARKET_PORT [8001]  VPP_STACK_MARKET_WORKERS [2; 0 = no market process, the TSO posts to the api]
#   VPP_STACK_DISPATCHER_METRICS_PORT [9101]  VPP_STACK_WORKER_CONCURRENCY [2]  VPP_STACK_STOP_TIMEOUT [60]
#   VPP_STACK_START_TIMEOUT [180: seconds the api and the market may take to answer /health]
#   VPP_STACK_BIN [the repository's .venv/bin]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${VPP_STACK_BIN:-$ROOT/.venv/bin}"
RUN="${VPP_STACK_DIR:-$ROOT/var/stack}"
MARKET_WORKERS="${VPP_STACK_MARKET_WORKERS:-2}"
PROCESSES=(api market worker beat dispatcher)
(( MARKET_WORKERS > 0 )) || PROCESSES=(api worker beat dispatcher)
# Intake first, the worker last so it drains what the others enqueued; a process that was not started is skipped.
STOP_ORDER=(api market dispatcher beat worker)

export VPP_DATABASE_URL="${VPP_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/vpp}"
export VPP_REDIS_URL="${VPP_REDIS_URL:-redis://127.0.0.1:6379/0}"
export VPP_DATA_DIR="${VPP_DATA_DIR:-$RUN/data}"
API_PORT="${VPP_STACK_API_PORT:-8000}"
export VPP_PUBLIC_URL="${VPP_PUBLIC_URL:-http://127.0.0.1:$API_PORT}"
API_WORKERS="${VPP_STACK_API_WORKERS:-2}"
MARKET_PORT="${VPP_STACK_MARKET_PORT:-8001}"
WORKER_METRICS_PORT="${VPP_STACK_WORKER_METRICS_PORT:-9102}"
DISPATCHER_METRICS_PORT="${VPP_STACK_DISPATCHER_METRICS_PORT:-9101}"
WORKER_CONCURRENCY="${VPP_STACK_WORKER_CONCURRENCY:-2}"
STOP_TIMEOUT="${VPP_STACK_STOP_TIMEOUT:-60}"
# Four API workers import the app at once (api and market): on a loaded 2-core host that took over 60 s.
START_TIMEOUT="${VPP_STACK_START_TIMEOUT:-180}"

say() { printf 'stack: %s\n' "$*" >&2; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

load_secrets() {
  if [[ -z "${VPP_SECRET_KEY:-}" || -z "${VPP_UFTP_SIGNING_KEY:-}" ]]; then
    if [[ ! -f "$RUN/secrets.env" ]]; then
      (umask 077
       {
         echo "VPP_SECRET_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
         echo "VPP_UFTP_SIGNING_KEY=$("$BIN/python" -c 'import base64, nacl.bindings as b; print(base64.b64encode(b.crypto_sign_keypair()[1]).decode())')"
         echo "VPP_TOKEN_KEY=$("$BIN/python" -c 'from vpp.keyring import generate_key; print(generate_key())')"
       } > "$RUN/secrets.env")
    fi
    set -a
    # shellcheck disable=SC1091
    source "$RUN/secrets.env"
    set +a
  fi
}

create_database() {
  "$BIN/python" - <<'EOF'
import os
from sqlalchemy import create_engine, make_url, text

url = make_url(os.environ["VPP_DATABASE_URL"])
if url.get_backend_name() == "postgresql":
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
            print(f"created database {url.database}")
    admin.dispose()
EOF
}

# Runs "$@" in the background; a watcher subshell records the pid, then the exit code once it ends.
launch() {
  local name="$1"; shift
  rm -f "$RUN/$name.exit" "$RUN/$name.pid"
  (
    trap '' HUP
    "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
    child=$!
    echo "$child" > "$RUN/$name.pid"
    wait "$child" && code=0 || code=$?
    echo "$code" > "$RUN/$name.exit"
  ) </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 50); do [[ -s "$RUN/$name.pid" ]] && break; sleep 0.1; done
  say "started $name (pid $(pid_of "$name"))"
}

wait_until() {  # name, timeout seconds, command...
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then say "$name died while starting; see $RUN/logs/$name.log"; return 1; fi
    if (( SECONDS >= deadline )); then say "$name not healthy after ${timeout}s"; return 1; fi
    sleep 0.5
  done
  say "$name healthy"
}

api_healthy() { curl -fsS --max-time 10 "http://127.0.0.1:${1:-$API_PORT}/health" | grep -q '"status":"ok"'; }
metrics_up() { curl -fsS --max-time 10 "http://127.0.0.1:$1/metrics" >/dev/null; }
worker_answers() {
  "$BIN/python" -c 'import sys
from vpp.config import Settings
from workers.celery_app import get_celery_app
sys.exit(0 if get_celery_app(Settings()).control.ping(timeout=1.0) else 1)'
}

start() {
  mkdir -p "$RUN/logs" "$VPP_DATA_DIR"
  for name in "${PROCESSES[@]}"; do
    if alive "$name"; then say "$name already runs (pid $(pid_of "$name")); stop first"; exit 1; fi
  done
  load_secrets
  create_database
  "$BIN/vpp" migrate >>"$RUN/logs/migrate.log" 2>&1 || { say "migration failed; see $RUN/logs/migrate.log"; exit 1; }
  launch api "$BIN/vpp" serve --host 127.0.0.1 --port "$API_PORT" --workers "$API_WORKERS"
  if (( MARKET_WORKERS > 0 )); then
    launch market "$BIN/vpp" serve --host 127.0.0.1 --port "$MARKET_PORT" --workers "$MARKET_WORKERS"
  fi
  launch worker "$BIN/vpp" worker --concurrency "$WORKER_CONCURRENCY" --metrics-port "$WORKER_METRICS_PORT"
  launch beat "$BIN/vpp" beat
  launch dispatcher "$BIN/vpp" dispatcher --metrics-port "$DISPATCHER_METRICS_PORT"
  wait_until api "$START_TIMEOUT" api_healthy \
    && { (( MARKET_WORKERS == 0 )) || wait_until market "$START_TIMEOUT" api_healthy "$MARKET_PORT"; } \
    && wait_until dispatcher 30 metrics_up "$DISPATCHER_METRICS_PORT" \
    && wait_until worker 60 worker_answers \
    && wait_until beat 10 alive beat \
    || { say "start failed; stopping what runs"; stop || true; exit 1; }
  (( MARKET_WORKERS == 0 )) || say "market (TSO setpoints) http://127.0.0.1:$MARKET_PORT"
  say "up: api http://127.0.0.1:$API_PORT, metrics :$API_PORT/metrics :$WORKER_METRICS_PORT :$DISPATCHER_METRICS_PORT"
}

status() {
  local all=0
  for name in "${PROCESSES[@]}"; do
    if alive "$name"; then
      echo "$name running pid $(pid_of "$name")"
    else
      echo "$name stopped exit $(cat "$RUN/$name.exit" 2>/dev/null || echo '?')"
      all=3
    fi
  done
  return "$all"
}

stop() {
  local failed=0 name pid deadline code
  for name in "${STOP_ORDER[@]}"; do
    pid="$(pid_of "$name")"
    [[ -n "$pid" ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      deadline=$((SECONDS + STOP_TIMEOUT))
      while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then
        say "$name ignored SIGTERM for ${STOP_TIMEOUT}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    for _ in $(seq 1 50); do [[ -s "$RUN/$name.exit" ]] && break; sleep 0.1; done
    code="$(cat "$RUN/$name.exit" 2>/dev/null || echo '?')"
    echo "$name exit $code"
    [[ "$code" == 0 ]] || failed=1
    rm -f "$RUN/$name.pid"
  done
  return "$failed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

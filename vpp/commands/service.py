"""Process commands: serve, migrate, worker, beat, openapi."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vpp.commands.common import CommandError, load_settings, open_database, print_json

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# uvicorn kills a worker that does not answer its supervisor's ping within 5 s. A worker importing the app takes
# longer than that on a loaded 2-core host, so uvicorn killed every new worker in a loop (`vpp soak`: 6 workers
# killed in 45 s before one started); a busy worker answers late too. Generous: a hung worker is still replaced.
WORKER_HEALTHCHECK_TIMEOUT_S = 30


def _prepare_metrics_dir(path: str) -> None:
    """Multi-process metrics in ``path``: created, a previous run's files dropped, the variable exported.

    Runs before prometheus_client is imported by any process sharing it (uvicorn's spawned workers and Celery's
    forked pool processes inherit the variable); one directory per process group, never shared between groups.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[METRICS_DIR_ENV] = str(directory)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the process commands."""
    p = sub.add_parser("serve", help="start the HTTP API (embedded mode: with the worker in-process)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (not in embedded mode)")
    p.add_argument("--worker-healthcheck-timeout", type=int, default=WORKER_HEALTHCHECK_TIMEOUT_S,
                   help="seconds a worker may take to answer its supervisor's ping before it is killed and replaced")
    p.set_defaults(func=serve)

    p = sub.add_parser("migrate", help="apply (or roll back) database migrations")
    p.add_argument("--revision", default="head")
    p.add_argument("--downgrade", action="store_true", help="roll back to --revision (default base)")
    p.set_defaults(func=migrate)

    p = sub.add_parser("worker", help="start a Celery worker on the Redis broker")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--queues", default="celery")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics of the worker and its pool processes on this port")
    p.set_defaults(func=worker)

    p = sub.add_parser("beat", help="start Celery beat (run exactly one)")
    p.set_defaults(func=beat)

    p = sub.add_parser("openapi", help="write the OpenAPI document")
    p.add_argument("--out", default="openapi/vpp.json")
    p.set_defaults(func=openapi)


def _ensure_admin_key(settings: Any) -> str | None:
    """In embedded mode, mint a first admin key when there is none, so a newcomer can sign in."""
    from vpp.apikeys import service as apikeys
    from vpp.db import unit_of_work

    engine, factory = open_database(settings)
    try:
        with unit_of_work(factory) as session:
            if apikeys.list_keys(session):
                return None
            _row, key = apikeys.create(session, name="bootstrap admin", role="admin", pepper=settings.secret)
            return key
    finally:
        engine.dispose()


def serve(args: argparse.Namespace) -> int:
    """Start the API."""
    import uvicorn

    from vpp.observability import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.embedded:
        _migrate(settings, "head", downgrade=False)
        key = _ensure_admin_key(settings)
        base = f"http://{args.host}:{args.port}"
        lines = [
            f"VPP aggregator (embedded: SQLite at {settings.resolved_database_url}, in-process worker)",
            f"  listening on {base}  (health: {base}/health, metrics: {base}/metrics, docs: {base}/docs)",
        ]
        if key:
            lines.append(f"  bootstrap admin key (shown once): {key}")
        lines.append("  more keys: vpp apikey create --role trader --name NAME")
        sys.stderr.write("\n".join(lines) + "\n")
        from vpp.api.app import create_app

        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None,
                    timeout_graceful_shutdown=10)
        return 0
    if args.workers > 1:
        # Spawned workers inherit the variable, so /metrics in any of them sums every worker's samples.
        # One directory per port: two API processes on one machine (deploy/local's api and market) must not share
        # (each empties its directory at start).
        _prepare_metrics_dir(os.environ.get(METRICS_DIR_ENV) or str(settings.data_dir / f"metrics-api-{args.port}"))
    if args.worker_healthcheck_timeout < 1:
        raise CommandError("--worker-healthcheck-timeout must be at least 1 s")
    uvicorn.run("vpp.api.main:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_config=None, timeout_graceful_shutdown=10,
                timeout_worker_healthcheck=args.worker_healthcheck_timeout)
    return 0


def _migrate(settings: Any, revision: str, *, downgrade: bool) -> str | None:
    from vpp import migrate as migrations

    engine, _ = open_database(settings)
    try:
        if downgrade:
            migrations.downgrade(engine, revision, token_keyring=settings.token_keyring)
        else:
            migrations.upgrade(engine, revision, token_keyring=settings.token_keyring)
        return migrations.current_revision(engine)
    finally:
        engine.dispose()


def migrate(args: argparse.Namespace) -> int:
    """Apply or roll back migrations."""
    settings = load_settings()
    revision = args.revision if not (args.downgrade and args.revision == "head") else "base"
    current = _migrate(settings, revision, downgrade=args.downgrade)
    print_json({"database": settings.resolved_database_url.split("@")[-1], "revision": current})
    return 0


def worker(args: argparse.Namespace) -> int:
    """Start a Celery worker; SIGTERM is a warm shutdown (running tasks finish, unstarted ones go back)."""
    settings = load_settings()
    if not settings.redis_url:
        raise CommandError("vpp worker needs VPP_REDIS_URL (in embedded mode tasks run inside vpp serve)")
    if args.metrics_port:
        # Before prometheus_client is imported: the forked pool processes then write their samples to files.
        own_dir = settings.data_dir / f"metrics-worker-{os.getpid()}"
        _prepare_metrics_dir(os.environ.get(METRICS_DIR_ENV) or str(own_dir))
    from vpp.observability import configure_logging
    from workers.celery_app import get_celery_app
    from workers.runtime import get_runtime

    configure_logging(settings.log_level, settings.log_format)
    if args.metrics_port:
        _serve_worker_metrics(args.metrics_port)
    get_runtime()
    app = get_celery_app(settings)
    # --quiet: no banner, so every line the worker writes is a JSON log record.
    app.worker_main(["--quiet", "worker", f"--concurrency={args.concurrency}", "-Q", args.queues,
                     "--loglevel", settings.log_level, "--without-gossip", "--without-mingle"])
    return 0


def _serve_worker_metrics(port: int) -> None:
    from celery.signals import worker_process_shutdown
    from prometheus_client import start_http_server
    from prometheus_client.multiprocess import mark_process_dead

    from vpp.observability import metrics_registry

    def forget(pid: int | None = None, **_kwargs: Any) -> None:
        mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

    worker_process_shutdown.connect(forget, weak=False)
    start_http_server(port, registry=metrics_registry())


def beat(_args: argparse.Namespace) -> int:
    """Start Celery beat."""
    from vpp.observability import configure_logging
    from workers.celery_app import get_celery_app

    settings = load_settings()
    if not settings.redis_url:
        raise CommandError("vpp beat needs VPP_REDIS_URL (in embedded mode the schedule runs inside vpp serve)")
    configure_logging(settings.log_level, settings.log_format)
    schedule_file = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    get_celery_app(settings).start(["--quiet", "beat", "--loglevel", settings.log_level, "-s", str(schedule_file)])
    return 0


def build_openapi() -> dict[str, Any]:
    """The OpenAPI document of the app on embedded settings (no connection is made)."""
    import tempfile

    from pydantic import SecretStr

    from vpp.api.app import create_app
    from vpp.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key=SecretStr("openapi-only"))
        app = create_app(settings, background=False)
        return app.openapi()


def openapi(args: argparse.Namespace) -> int:
    """Write the OpenAPI document."""
    doc = build_openapi()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print_json({"written": str(out), "paths": len(doc.get("paths", {}))})
    return 0

"""Logging with request and correlation ids, and the Prometheus metrics shared by all processes."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

HTTP_REQUESTS = Counter(
    "vpp_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "vpp_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TASKS = Counter("vpp_tasks_total", "Background tasks run", ["task", "outcome"])
AFRR_SETPOINTS = Counter("vpp_afrr_setpoints_total", "aFRR setpoints received", ["outcome"])
AFRR_REQUESTED_MW = Gauge("vpp_afrr_requested_mw", "aFRR setpoint applied (MW, positive = upward)", ["pool"])
AFRR_SUPPLIED_MW = Gauge("vpp_afrr_supplied_mw", "aFRR supplied: baseline minus measured (MW, + = up)", ["pool"])
DISPATCH_CYCLE = Histogram(
    "vpp_dispatch_cycle_seconds", "Dispatcher cycle (snapshot, allocation, persistence) per pool",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DISPATCH_LIMITS = Counter("vpp_dispatch_limits_total", "Session limits sent, by outcome", ["status"])
DISPATCH_POOLS_OWNED = Gauge("vpp_dispatch_pools_owned", "Pools this dispatcher owns")
UFTP_MESSAGES = Counter(
    "vpp_uftp_messages_total", "UFTP messages by direction, type and outcome", ["direction", "type", "outcome"]
)
UFTP_OUTBOX_GIVEN_UP = Counter(
    "vpp_uftp_outbox_given_up_total", "Outgoing UFTP messages abandoned after retrying for the configured time",
    ["type"],
)
OCPI_REQUESTS = Counter(
    "vpp_ocpi_requests_total", "Inbound OCPI requests by module, method and OCPI status code",
    ["module", "method", "status"],
)
PROFILE_REQUESTS = Counter(
    "vpp_ocpi_profile_requests_total", "Charging-profile (limit) requests by kind and outcome", ["kind", "outcome"]
)

_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.correlation_id = correlation_id_var.get()
        return True


# Defence in depth (no code path logs a secret; tests/integration/test_log_hygiene.py checks): anything shaped like
# one of our API keys or a credential in an Authorization header is masked before a line is written.
_SECRET_SHAPES = re.compile(
    r"(?P<key>vpp_[0-9a-f]{12}_)[A-Za-z0-9_\-]{16,}"
    r"|(?P<scheme>\b(?:Token|Bearer|Basic)\s+)[A-Za-z0-9+/=._\-]{16,}",
)


def redact(text: str) -> str:
    """``text`` with API keys and Authorization credentials masked."""
    return _SECRET_SHAPES.sub(lambda m: (m.group("key") or m.group("scheme")) + "***", text)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request and correlation ids and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr as JSON lines (or plain text), with ids attached to every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.addFilter(_RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------------------- operator metrics
# What an operator pages on. Counters and histograms are updated where things happen; the gauges that describe
# shared state (queue depth, job freshness, dependencies) are read at scrape time by ``OperatorCollector``.

AFRR_SETPOINT_LAG = Histogram(
    "vpp_afrr_setpoint_lag_seconds", "aFRR setpoint timestamp to intake (stored and acknowledged)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
)
DISPATCH_ALLOCATION = Histogram(
    "vpp_dispatch_allocation_seconds", "Allocation of a pool target to session limits, per cycle",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DISPATCH_SEND = Histogram(
    "vpp_dispatch_send_seconds", "One batch of session limits to a CPO, until every outcome is known", ["cpo"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
DISPATCH_LIMIT_OUTCOMES = Counter(
    "vpp_dispatch_limit_outcomes_total", "Session limits sent by the dispatcher, by CPO group and outcome",
    ["cpo", "status"],
)
DISPATCH_POOLS_KNOWN = Gauge("vpp_dispatch_pools_known", "Pools with sessions, as this dispatcher last listed them")
PROFILE_OUTCOMES = Counter(
    "vpp_ocpi_profile_outcomes_total", "Charging-profile requests per OCPI connection (CPO), kind and outcome",
    ["connection", "kind", "outcome"],
)
OCPI_ERRORS = Counter(
    "vpp_ocpi_errors_total", "OCPI calls to a peer that failed (transport, HTTP or OCPI status), per connection",
    ["connection", "operation"],
)

OPERATOR_METRIC_NAMES = (
    "vpp_celery_queue_length", "vpp_job_seconds_since_success", "vpp_job_interval_seconds", "vpp_dependency_up",
)


class OperatorCollector:
    """Reads shared state at scrape time: Celery queue lengths in Redis, job freshness from job_runs, dependencies.

    ``state`` is an app's ``state`` (session_factory, redis, and ``job_intervals``: a callable returning the
    schedule interval per periodic job, installed by the composition root that knows the schedule); anything
    missing is reported as no samples, so every family is always declared.
    """

    def __init__(self, state: object, queues: tuple[str, ...] = ("celery",)) -> None:
        self._state = state
        self._queues = queues

    def describe(self) -> list[object]:
        """No fixed description: the families are built per scrape."""
        return []

    def collect(self) -> list[object]:
        """The operator gauges, read now."""
        from prometheus_client.core import GaugeMetricFamily

        queue = GaugeMetricFamily("vpp_celery_queue_length", "Celery messages waiting in Redis", labels=["queue"])
        since = GaugeMetricFamily(
            "vpp_job_seconds_since_success",
            "Seconds since the last successful run of a scheduled job (job_runs); jobs never recorded are left out",
            labels=["job"],
        )
        interval = GaugeMetricFamily("vpp_job_interval_seconds", "Schedule interval of a periodic job",
                                     labels=["job"])
        up = GaugeMetricFamily("vpp_dependency_up", "1 when the dependency answered this scrape", labels=["dependency"])
        job_intervals = getattr(self._state, "job_intervals", None)
        redis_client = getattr(self._state, "redis", None)
        if redis_client is not None:
            try:
                for name in self._queues:
                    queue.add_metric([name], float(redis_client.llen(name)))
                up.add_metric(["redis"], 1.0)
            except Exception:
                up.add_metric(["redis"], 0.0)
        if job_intervals is not None:
            try:
                for name, seconds in job_intervals().items():
                    interval.add_metric([name], seconds)
            except Exception:
                logging.getLogger(__name__).warning("periodic jobs unavailable for metrics", exc_info=True)
        factory = getattr(self._state, "session_factory", None)
        if factory is not None:
            try:
                for name, seconds in job_freshness(factory).items():
                    since.add_metric([name], seconds)
                up.add_metric(["database"], 1.0)
            except Exception:
                up.add_metric(["database"], 0.0)
        return [queue, since, interval, up]


def job_freshness(session_factory: object) -> dict[str, float]:
    """Seconds since each recorded job last succeeded (or, never successful, since its first recorded run)."""
    from sqlalchemy import case, func, select

    from vpp.jobs.tables import JobRun

    ok_at = func.max(case((JobRun.status == "ok", JobRun.finished_at), else_=None))
    stmt = select(JobRun.name, ok_at, func.min(JobRun.started_at)).group_by(JobRun.name)
    now = datetime.now(UTC)
    out: dict[str, float] = {}
    with session_factory() as session:  # type: ignore[operator]
        for name, last_ok, first in session.execute(stmt):
            at = last_ok or first
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            out[str(name)] = max(0.0, (now - at).total_seconds())
    return out


def observe_setpoint_lag(timestamp: datetime) -> None:
    """Record how long after its own timestamp a setpoint was taken in."""
    AFRR_SETPOINT_LAG.observe(max(0.0, datetime.now(UTC).timestamp() - timestamp.timestamp()))


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry(state: object | None = None) -> CollectorRegistry:
    """A registry for one scrape: this process's metrics (or every process's, in multi-process mode) plus the
    operator gauges when an app's state is given."""
    import os

    from prometheus_client import REGISTRY
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Proxy(REGISTRY))  # type: ignore[arg-type]
    if state is not None:
        registry.register(OperatorCollector(state))  # type: ignore[arg-type]
    return registry


class _Proxy:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> object:
        return self._registry.collect()


def render_metrics(state: object | None = None) -> bytes:
    """The Prometheus text exposition for one scrape."""
    return generate_latest(metrics_registry(state))


# ------------------------------------------------------------------------------- garbage collector pauses

_gc_started: list[float] = []


def watch_gc_pauses(threshold_ms: float = 20.0) -> None:
    """Log every garbage collection of this process that stops it for more than ``threshold_ms`` (logger
    ``vpp.gc``): a full collection of a large heap stalls every request in flight, and shows nowhere else.

    Idempotent: one callback per process.
    """
    if any(getattr(cb, "__name__", "") == "_gc_pause" for cb in gc.callbacks):
        return
    gc_log = logging.getLogger("vpp.gc")

    def _gc_pause(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_started[:] = [time.perf_counter()]
        elif _gc_started:
            ms = (time.perf_counter() - _gc_started[0]) * 1000
            if ms > threshold_ms:
                gc_log.info("gc pause", extra={"generation": info.get("generation"), "pause_ms": round(ms, 1),
                                               "collected": info.get("collected")})

    gc.callbacks.append(_gc_pause)


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, routes, schemas: ~250,000 objects in an API process) out of
    the collector's reach: a full collection scanned them all and stopped the process for 150-200 ms on a 2-core VM,
    in front of all it was doing. They live as long as the process; start-up's garbage is collected first."""
    gc.collect()
    gc.freeze()


def silence_solver_banner() -> None:
    """Let the LP solver print its licence banner now, to nowhere: HiGHS writes it to stdout from native code when
    the process builds its first solver (once per process), which in a simulation lands among the progress lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        import highspy  # the solver loads only for the commands that solve

        highspy.Highs()  # type: ignore[no-untyped-call]
        ctypes.CDLL(None).fflush(None)  # the banner sits in C's buffer when stdout is a pipe
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(sink)

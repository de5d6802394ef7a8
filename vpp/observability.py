"""Logging with request and correlation ids, and the Prometheus metrics shared by all processes."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

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

"""Typed ports for what lies outside the domain: clocks, task queues, charge-point networks, markets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol


class Clock(Protocol):
    """Where "now" comes from; simulations inject a faster one."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)


class TaskQueue(Protocol):
    """Enqueues a background task by its stable name (after the caller's transaction commits)."""

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        """Run ``task_name`` with ``kwargs`` in the background."""
        ...

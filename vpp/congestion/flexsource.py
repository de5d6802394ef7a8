"""Where the congestion market gets flexibility and metered load: the ``CongestionFlexSource`` port.

The portfolio implements the port; until a composition root installs it, ``NoFlexibility`` answers and the
service refuses requests with a reason. ``StaticFlexSource`` is the simple implementation for tests and the sim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from vpp.domain.errors import ServiceUnavailable
from vpp.ports import CongestionFlexibility, CongestionFlexSource

FlexSourceFactory = Callable[[Session], CongestionFlexSource]
"""Builds the source for one transaction (the portfolio reads its state through the session)."""


class NoFlexibility:
    """The source when none is configured: every question is answered with ServiceUnavailable."""

    def flexibility(self, pool: str, isp_starts: Sequence[datetime], reliability: float) -> CongestionFlexibility:
        """Raise: nothing is known."""
        raise ServiceUnavailable(f"no congestion flexibility source is configured for {pool}")

    def measured_load_kw(self, pool: str, isp_starts: Sequence[datetime]) -> list[float | None]:
        """Nothing is measured."""
        return [None for _ in isp_starts]


@dataclass
class StaticFlexSource:
    """Fixed numbers per pool: a flat prognosis and reduction, and measured load per ISP start."""

    prognosis_kw: Mapping[str, float]
    reduction_kw: Mapping[str, float]
    measured_kw: dict[tuple[str, datetime], float] = field(default_factory=dict)
    asked_reliability: list[float] = field(default_factory=list)

    def flexibility(self, pool: str, isp_starts: Sequence[datetime], reliability: float) -> CongestionFlexibility:
        """The pool's flat prognosis and reduction for every ISP."""
        self.asked_reliability.append(reliability)
        if pool not in self.prognosis_kw:
            raise ServiceUnavailable(f"no flexibility known for {pool}")
        n = len(isp_starts)
        return CongestionFlexibility(
            prognosis_kw=(self.prognosis_kw[pool],) * n, reduction_kw=(self.reduction_kw.get(pool, 0.0),) * n
        )

    def measured_load_kw(self, pool: str, isp_starts: Sequence[datetime]) -> list[float | None]:
        """The recorded measurements, None where there are none."""
        return [self.measured_kw.get((pool, start)) for start in isp_starts]


def _no_flexibility(_session: Session) -> CongestionFlexSource:
    return NoFlexibility()


_factory: FlexSourceFactory = _no_flexibility


def configure_flex_source(factory: FlexSourceFactory) -> None:
    """Install the process's source (composition roots: the portfolio, a test, the simulated day)."""
    global _factory
    _factory = factory


def reset_flex_source() -> None:
    """Back to no source configured (tests call this when they are done)."""
    configure_flex_source(_no_flexibility)


def configure_default_flex_source(factory: FlexSourceFactory) -> None:
    """Install ``factory`` unless a source was configured explicitly (a test or simulation keeps its own)."""
    if _factory is _no_flexibility:
        configure_flex_source(factory)


def flex_source_for(session: Session) -> CongestionFlexSource:
    """The configured source for this transaction."""
    return _factory(session)

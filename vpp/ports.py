"""Typed ports for what lies outside the domain: clocks, task queues, charge-point networks, markets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vpp.domain.dispatch import DispatchSnapshot
    from vpp.domain.market_orders import AfrrBidDocument, ClearingResult, CurveOrder
    from vpp.domain.pool_view import PoolFlexibility


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


class CredentialsRotation(Protocol):
    """Rotates a peer connection's tokens both ways (OCPI: a credentials PUT on the CPO)."""

    async def __call__(self, connection_id: str) -> None:
        """Issue the peer a new token, send it, store the one it answers with; raises if the peer refuses."""
        ...


class TaskQueue(Protocol):
    """Enqueues a background task by its stable name (after the caller's transaction commits)."""

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        """Run ``task_name`` with ``kwargs`` in the background."""
        ...


@dataclass(frozen=True, slots=True)
class SessionLimit:
    """Cap a charging session at ``limit_kw`` until ``valid_until`` (None: until changed or cleared).

    Positive is charging power; a negative limit asks for discharge (V2G) and is only sent to CPOs that
    opted in, otherwise it is clipped to 0.
    """

    session_id: str
    limit_kw: float
    valid_until: datetime | None = None


class LimitStatus(StrEnum):
    """Where a limit request stands; ``accepted`` still awaits the charge point's confirmation."""

    ACCEPTED = "accepted"
    APPLIED = "applied"
    REJECTED = "rejected"
    NOT_SUPPORTED = "not_supported"
    UNKNOWN_SESSION = "unknown_session"
    TOO_OFTEN = "too_often"
    FAILED = "failed"
    LOST = "lost"
    SUPERSEDED = "superseded"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """What became of one session's limit request."""

    session_id: str
    status: LimitStatus
    request_id: str | None = None
    limit_kw: float | None = None
    clipped: bool = False
    retry_after_s: float | None = None
    message: str = ""


class ChargePointNetwork(Protocol):
    """Where limits on running charging sessions are set and cleared (the CPOs, whatever protocol they speak)."""

    async def set_limits(self, limits: Sequence[SessionLimit]) -> list[LimitOutcome]:
        """Ask each session's charge point to cap its power; one outcome per limit, in order."""
        ...

    async def clear_limits(self, session_ids: Sequence[str]) -> list[LimitOutcome]:
        """Remove the caps we set on these sessions; one outcome per session, in order."""
        ...


class PoolSnapshotSource(Protocol):
    """What the dispatcher sees of its pools (implemented by the portfolio).

    ``groups.group_ids`` are pool ids (``site:...``, ``congestion_point:...``, ``cpo:...``) so that DSO limits
    recorded as commitments on those pools apply to them; a ``cpo:`` group lets the dispatcher isolate a CPO
    that is down (its sends go in their own time-boxed batch).
    """

    def pools(self) -> list[str]:
        """The pools that have controllable sessions now (the dispatcher's work list)."""
        ...

    def snapshot(self, pool: str, at: datetime) -> DispatchSnapshot | None:
        """The pool's controllable sessions at ``at``; None when the pool is unknown or empty."""
        ...


@dataclass(frozen=True, slots=True)
class ActivationEvent:
    """A doorbell for the dispatcher: a new aFRR setpoint for ``pool``, or DSO limits changed (``pool`` None)."""

    kind: str
    pool: str | None = None
    seq: int | None = None


class ActivationBus(Protocol):
    """Carries activation events from the intake to the dispatcher owning the pool (after the intake commits)."""

    def publish(self, event: ActivationEvent) -> None:
        """Send ``event``; never raises for a broken bus (the dispatcher also polls the database)."""
        ...


@dataclass(frozen=True, slots=True)
class CongestionFlexibility:
    """What a congestion-point pool can do per ISP: expected load and the reduction available (kW, in order)."""

    prognosis_kw: tuple[float, ...]
    reduction_kw: tuple[float, ...]


class CongestionFlexSource(Protocol):
    """The portfolio as seen by the congestion market: flexibility and metered load of a congestion-point pool.

    ``pool`` is ``congestion_point:<EAN>``; ``isp_starts`` are UTC quarter-hours. Load is positive for
    consumption; a reduction is a non-negative magnitude below the prognosis.
    """

    def flexibility(self, pool: str, isp_starts: Sequence[datetime], reliability: float) -> CongestionFlexibility:
        """Expected load (the D-prognosis) and the reduction available at ``reliability``, per ISP."""
        ...

    def measured_load_kw(self, pool: str, isp_starts: Sequence[datetime]) -> list[float | None]:
        """Average metered load per ISP; None where data is missing (never a guessed zero)."""
        ...


class PortfolioView(Protocol):
    """What bid builders read of the portfolio (the portfolio service implements it)."""

    def pools(self) -> list[str]:
        """Every pool id with sessions now or forecast."""
        ...

    def flexibility(self, pool: str, start: datetime, end: datetime) -> PoolFlexibility:
        """The pool's flexibility on the ISPs in [start, end); NotFound for an unknown pool."""
        ...

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: Sequence[float]) -> dict[str, Any]:
        """The pool's sessions (present and forecast at the reliability quantile) as a scheduling instance,
        in the format of ``vpp solve dayahead``."""
        ...


class DayAheadDocuments(Protocol):
    """The power exchange's curve orders and clearing results (implemented in adapters/markets/dayahead)."""

    def check_order(self, order: CurveOrder) -> None:
        """Refuse, as InvalidInput with the reason, an order the exchange would not accept."""
        ...

    def write_order(self, order: CurveOrder, fmt: str) -> str:
        """The order as the exchange's document, ``fmt`` "json" or "csv" (checked first)."""
        ...

    def read_results(self, text: str, fmt: str) -> list[ClearingResult]:
        """The clearing results in ``text`` (``fmt`` "json" or "csv"); InvalidInput when malformed."""
        ...


class AfrrDocuments(Protocol):
    """The TSO's aFRR bid documents (implemented in adapters/markets/entsoe as ReserveBid_MarketDocument)."""

    def write_bids(self, document: AfrrBidDocument) -> bytes:
        """The bids as the TSO's document; InvalidInput for a bid outside the market's rules."""
        ...


@dataclass(frozen=True, slots=True)
class MarketDocuments:
    """The document formats bids are written in and read from, one per market; the composition root picks them."""

    dayahead: DayAheadDocuments
    afrr: AfrrDocuments

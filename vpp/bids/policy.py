"""The rules bids are built and checked by: limits, sizes, margins and gate closures (from the settings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from vpp.config import Settings
from vpp.domain.isp import market_zone


class Market(StrEnum):
    """The markets a bid goes to."""

    DAY_AHEAD = "day-ahead"
    AFRR = "afrr"
    CONGESTION = "congestion"


class BidStatus(StrEnum):
    """Where a bid stands: a draft can be changed, a submitted bid waits for awards."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    AWARDED = "awarded"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts on a bid: an API key, or a background job (``key_id`` None)."""

    key_id: str | None
    name: str


SYSTEM = Actor(None, "system:beat")


@dataclass(frozen=True)
class BidPolicy:
    """Limits, sizes, margins and gate closures the bid builders and validators apply."""

    market_timezone: str = "Europe/Amsterdam"
    dayahead_min_price_eur_per_mwh: float = -500.0
    dayahead_max_price_eur_per_mwh: float = 4_000.0
    dayahead_max_levels: int = 198
    dayahead_gate_local: time = time(12, 0)
    dayahead_area_code: str = "NL"
    dayahead_portfolio: str = "VPP-EV"
    # A V2G car sells in an MTU only where it clears this much above buying the energy back (wear, margin).
    dayahead_v2g_spread_eur_per_mwh: float = 10.0
    # Each MTU's curve moves the whole delivery day with its price (a forecast off by a level shifts energy
    # between days, not out of every MTU at once); False: the other MTUs stay at their forecast.
    dayahead_curve_shift: bool = True
    # The position models the cars as the planner that controls them does (on AC 11 kW, done by the taper's
    # departure, the lead charged with the taper: ``vpp.bids.dayahead.as_planned``); False: each car at its
    # charger's power up to its departure.
    dayahead_planner_model: bool = True
    # With the planner's model, the cars still to come are tapered as the present ones (to the learned target, else
    # full); False: bought up to their departure, as the re-plan plans its forecast arrivals (``as_planned``).
    dayahead_taper_to_come: bool = True
    forecast_weeks: int = 4
    reliability: float = 0.9
    afrr_product_hours: int = 4
    afrr_minimum_kw: float = 1_000.0
    afrr_step_kw: float = 1_000.0
    afrr_energy_gate_minutes: int = 25
    afrr_capacity_gate_local: time = time(9, 0)
    afrr_energy_price_limit_eur_per_mwh: float = 15_000.0
    afrr_capacity_price_max_eur_per_mw_per_h: float = 99_999.0
    afrr_margin_eur_per_mwh: float = 10.0
    afrr_capacity_margin_eur_per_mw_per_h: float = 5.0
    afrr_activation_share: float = 0.1
    afrr_recovery_hours: float = 4.0
    bsp_eic: str = "10XVPP-AGGREG--X"
    tso_eic: str = "10X1001A1001A361"
    afrr_domain_eic: str = "10YNL----------L"
    congestion_price_eur_per_mwh: float = 200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BidPolicy:
        """The policy of this process."""
        return cls(
            market_timezone=settings.market_timezone,
            dayahead_min_price_eur_per_mwh=settings.bids_dayahead_min_price_eur_per_mwh,
            dayahead_max_price_eur_per_mwh=settings.bids_dayahead_max_price_eur_per_mwh,
            dayahead_area_code=settings.bids_dayahead_area_code,
            dayahead_portfolio=settings.bids_dayahead_portfolio,
            forecast_weeks=settings.bids_forecast_weeks,
            reliability=settings.bids_reliability,
            afrr_product_hours=settings.bids_afrr_product_hours,
            afrr_energy_price_limit_eur_per_mwh=settings.bids_afrr_energy_price_limit_eur_per_mwh,
            afrr_margin_eur_per_mwh=settings.bids_afrr_margin_eur_per_mwh,
            afrr_capacity_margin_eur_per_mw_per_h=settings.bids_afrr_capacity_margin_eur_per_mw_per_h,
            bsp_eic=settings.bids_bsp_eic,
            tso_eic=settings.bids_tso_eic,
            afrr_domain_eic=settings.bids_afrr_domain_eic,
            congestion_price_eur_per_mwh=settings.uftp_offer_price_eur_per_mwh,
        )

    def local_at(self, day: date, at: time) -> datetime:
        """UTC of the local wall-clock time ``at`` on ``day`` in the market zone."""
        return datetime.combine(day, at, market_zone(self.market_timezone)).astimezone(UTC)

    def delivery_day(self, moment: datetime) -> date:
        """The local delivery day containing ``moment``."""
        return moment.astimezone(market_zone(self.market_timezone)).date()

    def dayahead_gate(self, first_mtu: datetime) -> datetime:
        """Day-ahead gate closure: 12:00 CET/CEST on the day before delivery."""
        return self.local_at(self.delivery_day(first_mtu) - timedelta(days=1), self.dayahead_gate_local)

    def afrr_energy_gate(self, mtu_start: datetime) -> datetime:
        """aFRR energy gate closure: 25 minutes before the MTU."""
        return mtu_start - timedelta(minutes=self.afrr_energy_gate_minutes)

    def afrr_capacity_gate(self, product_start: datetime) -> datetime:
        """aFRR capacity gate closure: 09:00 local on the day before the product's delivery day."""
        return self.local_at(self.delivery_day(product_start) - timedelta(days=1), self.afrr_capacity_gate_local)

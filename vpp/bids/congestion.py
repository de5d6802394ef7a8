"""Congestion offer drafts: the pool's reliable reduction per ISP (the UFTP service sends real FlexOffers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vpp.bids.dayahead import iso
from vpp.bids.policy import BidPolicy
from vpp.domain.errors import InvalidInput
from vpp.ports import PortfolioView


def build_content(portfolio: PortfolioView, policy: BidPolicy, *, pool: str, start: datetime, end: datetime,
                  price_eur_per_mwh: float | None) -> dict[str, Any]:
    """Available reduction below the baseline per ISP, at the forecast's reliability quantile."""
    flex = portfolio.flexibility(pool, start, end)
    reduction, _ = flex.headroom_kw(flex.baseline_kw, reliable=True)
    return {
        "price_eur_per_mwh": policy.congestion_price_eur_per_mwh if price_eur_per_mwh is None else price_eur_per_mwh,
        "isps": [{"isp_start": iso(t), "prognosis_kw": round(float(b), 3), "reduction_kw": round(float(r), 3)}
                 for t, b, r in zip(flex.isp_starts, flex.baseline_kw, reduction, strict=True)],
    }


def validate(content: dict[str, Any]) -> None:
    """Reductions are non-negative magnitudes."""
    for item in content["isps"]:
        if float(item["reduction_kw"]) < 0:
            raise InvalidInput(f"ISP {item['isp_start']}: a reduction cannot be negative")

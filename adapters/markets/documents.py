"""The market document formats the service writes bids in and reads results from (``vpp.ports.MarketDocuments``).

Composition roots (vpp/api/app.py, workers/) call ``market_documents()``; a new market's format implements its
port in ``adapters/markets/<platform>/documents.py`` and is added here.
"""

from __future__ import annotations

from adapters.markets.dayahead.documents import CurveOrderDocuments
from adapters.markets.entsoe.documents import ReserveBidDocuments
from vpp.ports import MarketDocuments


def market_documents() -> MarketDocuments:
    """The exchange's curve-order formats for day-ahead, ENTSO-E ReserveBid for aFRR."""
    return MarketDocuments(dayahead=CurveOrderDocuments(), afrr=ReserveBidDocuments())

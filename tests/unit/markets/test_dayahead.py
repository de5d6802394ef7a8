from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from adapters.markets.dayahead import (
    CurveOrder,
    CurvePoint,
    MtuCurve,
    curve_order_to_csv,
    curve_order_to_json,
    parse_results_csv,
    parse_results_json,
    validate_curve_order,
)
from vpp.domain.errors import InvalidInput

DAY = date(2025, 10, 2)
FIRST_MTU = datetime(2025, 10, 1, 22, 0, tzinfo=UTC)  # 00:00 Europe/Amsterdam (CEST)


def _curve(start: datetime, *points: tuple[float, float]) -> MtuCurve:
    return MtuCurve(start, [CurvePoint(price, demand_kw) for price, demand_kw in points])


def _order(*curves: MtuCurve, day: date = DAY) -> CurveOrder:
    return CurveOrder(portfolio="VPP-EV-1", area_code="NL", delivery_day=day, curves=list(curves))


def test_json_export_has_one_padded_monotone_curve_per_mtu() -> None:
    order = _order(
        _curve(FIRST_MTU, (0, 1_234), (50, 800), (120, 0)),
        _curve(FIRST_MTU + timedelta(minutes=15), (-20, 2_000), (80, 1_000)),
    )

    document = json.loads(curve_order_to_json(order))

    assert document["portfolio"] == "VPP-EV-1"
    assert document["areaCode"] == "NL"
    first, second = document["curves"]
    assert first["contractId"] == "NL-QH-20251002-01"
    assert second["contractId"] == "NL-QH-20251002-02"
    assert first["deliveryStart"] == "2025-10-01T22:00:00Z"
    assert first["deliveryEnd"] == "2025-10-01T22:15:00Z"
    assert first["curvePoints"] == [
        {"price": -500.0, "volume": 1.2},
        {"price": 0.0, "volume": 1.2},
        {"price": 50.0, "volume": 0.8},
        {"price": 120.0, "volume": 0.0},
        {"price": 4000.0, "volume": 0.0},
    ]


def test_csv_export_lists_every_point_in_mw() -> None:
    text = curve_order_to_csv(_order(_curve(FIRST_MTU, (-500, 3_000), (4_000, 0))))

    rows = list(csv.DictReader(io.StringIO(text)))

    assert [(row["price_eur_per_mwh"], row["volume_mw"]) for row in rows] == [("-500.00", "3.0"), ("4000.00", "0.0")]
    assert rows[0]["contract_id"] == "NL-QH-20251002-01"


def test_mtus_are_numbered_in_the_local_day_on_a_dst_day_with_100_quarter_hours() -> None:
    last_mtu = datetime(2025, 10, 26, 22, 45, tzinfo=UTC)  # 23:45 CET on the 25-hour day

    document = json.loads(curve_order_to_json(_order(_curve(last_mtu, (0, 1_000)), day=date(2025, 10, 26))))

    assert document["curves"][0]["contractId"] == "NL-QH-20251026-100"


@pytest.mark.parametrize(
    ("curve", "reason"),
    [
        (_curve(FIRST_MTU, (0, 500), (50, 900)), "non-increasing"),
        (_curve(FIRST_MTU, (-600, 500)), "outside the limits"),
        (_curve(FIRST_MTU, (4_000.01, 500)), "outside the limits"),
        (_curve(FIRST_MTU, (50, 500), (10, 400)), "strictly increase"),
        (_curve(FIRST_MTU), "no points"),
        (_curve(FIRST_MTU + timedelta(minutes=7), (0, 1)), "15-minute grid"),
        (_curve(FIRST_MTU - timedelta(minutes=15), (0, 1)), "outside delivery day"),
    ],
)
def test_invalid_curve_is_refused_with_a_reason(curve: MtuCurve, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_curve_order(_order(curve))


def test_a_curve_that_sells_where_the_price_is_high_is_exported_with_negative_volumes() -> None:
    # V2G: buy 1.2 MW at low prices, nothing at 100 EUR/MWh, sell 0.8 MW above 150 EUR/MWh.
    document = json.loads(curve_order_to_json(_order(_curve(FIRST_MTU, (0, 1_200), (100, 0), (150, -800)))))

    volumes = [point["volume"] for point in document["curves"][0]["curvePoints"]]
    assert volumes[0] == 1.2 and volumes[-1] == -0.8
    assert volumes == sorted(volumes, reverse=True)


def test_duplicate_mtu_is_refused() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        curve_order_to_json(_order(_curve(FIRST_MTU, (0, 1)), _curve(FIRST_MTU, (0, 1))))


def test_clearing_results_import_from_csv_and_json_into_kw() -> None:
    csv_text = (
        "delivery_start_utc,delivery_end_utc,contract_id,price_eur_per_mwh,volume_mw\n"
        "2025-10-01T22:15:00Z,2025-10-01T22:30:00Z,NL-QH-20251002-02,61.2,0.9\n"
        "2025-10-01T22:00:00Z,2025-10-01T22:15:00Z,NL-QH-20251002-01,55.1,0.8\n"
    )
    json_text = json.dumps(
        {
            "results": [
                {
                    "deliveryStart": "2025-10-01T22:00:00Z",
                    "deliveryEnd": "2025-10-01T22:15:00Z",
                    "price": 55.1,
                    "volume": 0.8,
                },
                {
                    "deliveryStart": "2025-10-01T22:15:00Z",
                    "deliveryEnd": "2025-10-01T22:30:00Z",
                    "price": 61.2,
                    "volume": 0.9,
                },
            ]
        }
    )

    from_csv, from_json = parse_results_csv(csv_text), parse_results_json(json_text)

    assert from_csv == from_json
    assert [(r.mtu_start_utc, r.price_eur_per_mwh, r.accepted_demand_kw) for r in from_csv] == [
        (FIRST_MTU, 55.1, 800.0),
        (FIRST_MTU + timedelta(minutes=15), 61.2, 900.0),
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2025-10-01T22:00:00Z,2025-10-01T23:00:00Z,50,1", "15-minute MTU"),
        ("2025-10-01T22:00:00Z,2025-10-01T22:15:00Z,5000,1", "outside the limits"),
        ("2025-10-01T22:00:00,2025-10-01T22:15:00,50,1", "UTC offset"),
        ("2025-10-01T22:00:00Z,2025-10-01T22:15:00Z,abc,1", "result 1"),
    ],
)
def test_invalid_clearing_result_is_refused(row: str, reason: str) -> None:
    text = "delivery_start_utc,delivery_end_utc,price_eur_per_mwh,volume_mw\n" + row + "\n"

    with pytest.raises(InvalidInput, match=reason):
        parse_results_csv(text)


def test_results_csv_without_required_columns_is_refused() -> None:
    with pytest.raises(InvalidInput, match="lacks columns"):
        parse_results_csv("start,price\n")

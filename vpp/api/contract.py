"""The parts of the OpenAPI document the routes cannot state one by one: the answers every operation of a kind
can give (400/413 for a body, 422 for any input, 500 anywhere, in the one error shape) and the links from the
operations that create or list things to the ones that read them, so a generated client (and schemathesis'
stateful phase) can follow an id from where it is made to where it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from vpp.api.errors import ERROR_DESCRIPTIONS

ERROR_REF = {"$ref": "#/components/schemas/ErrorRead"}

# operationId -> status -> link name -> (target operationId, parameters as OpenAPI runtime expressions)
LINKS: dict[str, dict[str, dict[str, tuple[str, dict[str, str]]]]] = {
    "build_bid": {"201": {
        "GetBid": ("get_bid", {"bid_id": "$response.body#/id"}),
        "UpdateBid": ("update_bid", {"bid_id": "$response.body#/id"}),
        "SubmitBid": ("submit_bid", {"bid_id": "$response.body#/id"}),
        "ExportBid": ("export_bid", {"bid_id": "$response.body#/id"}),
        "ImportBidAwards": ("import_bid_awards", {"bid_id": "$response.body#/id"}),
        "GetBidAudit": ("get_bid_audit", {"bid_id": "$response.body#/id"}),
        "ListBidsOfPool": ("list_bids", {"pool": "$response.body#/pool"}),
        "ListCommitmentsOfPool": ("list_commitments", {"pool": "$response.body#/pool",
                                                        "start": "$response.body#/period_start",
                                                        "end": "$response.body#/period_end"}),
    }},
    "list_bids": {"200": {
        "GetFirstBid": ("get_bid", {"bid_id": "$response.body#/0/id"}),
        "GetFirstBidAudit": ("get_bid_audit", {"bid_id": "$response.body#/0/id"}),
    }},
    "submit_bid": {"200": {"GetBidAudit": ("get_bid_audit", {"bid_id": "$response.body#/id"})}},
    "update_bid": {"200": {"GetBid": ("get_bid", {"bid_id": "$response.body#/id"})}},
    "list_sessions": {"200": {
        "GetFirstSession": ("get_session", {"session_id": "$response.body#/items/0/id"}),
        "GetFirstChargingNeed": ("get_charging_need", {"session_id": "$response.body#/items/0/id"}),
        "PutFirstChargingNeed": ("put_charging_need", {"session_id": "$response.body#/items/0/id"}),
    }},
    "put_charging_need": {"200": {
        "GetChargingNeed": ("get_charging_need", {"session_id": "$response.body#/session_id"}),
        "GetSession": ("get_session", {"session_id": "$response.body#/session_id"}),
    }},
    "run_settlement_day": {"200": {
        "GetSettlementDay": ("get_settlement_day", {"day": "$request.path.day", "pool": "$response.body#/0/pool"}),
        "GetSettlementIsps": ("get_settlement_rows", {"day": "$request.path.day", "kind": "isps",
                                                      "pool": "$response.body#/0/pool"}),
        "GetSettlementSessions": ("get_settlement_rows", {"day": "$request.path.day", "kind": "sessions",
                                                          "pool": "$response.body#/0/pool"}),
        "GetSettlementPlot": ("get_settlement_plot", {"day": "$request.path.day",
                                                      "pool": "$response.body#/0/pool"}),
    }},
    "create_api_key": {"201": {"RevokeApiKey": ("revoke_api_key", {"key_id": "$response.body#/id"})}},
    "invite_ocpi_connection": {"201": {
        "GetConnection": ("get_ocpi_connection", {"connection_id": "$response.body#/connection_id"}),
        "UpdateConnection": ("update_ocpi_connection", {"connection_id": "$response.body#/connection_id"}),
        "PullConnection": ("pull_ocpi_connection", {"connection_id": "$response.body#/connection_id"}),
    }},
    "list_ocpi_connections": {"200": {
        "GetFirstConnection": ("get_ocpi_connection", {"connection_id": "$response.body#/0/id"}),
    }},
    "put_site": {"200": {
        "AssignSiteLocation": ("assign_site_location", {"site_id": "$request.path.site_id"}),
        "PutSiteLoad": ("put_site_load", {"site_id": "$request.path.site_id"}),
        "GetSiteFlexibility": ("get_pool_flexibility", {"pool": "$response.body#/pool"}),
        "GetSiteForecast": ("get_pool_forecast", {"pool": "$response.body#/pool"}),
        "ListSiteSessions": ("list_ui_pool_sessions", {"pool": "$response.body#/pool"}),
    }},
    "put_congestion_point": {"200": {
        "GetCongestionPointFlexibility": ("get_pool_flexibility", {"pool": "$response.body#/pool"}),
        "GetCongestionPointForecast": ("get_pool_forecast", {"pool": "$response.body#/pool"}),
    }},
    "list_pools": {"200": {
        "GetFirstPoolFlexibility": ("get_pool_flexibility", {"pool": "$response.body#/0/pool"}),
        "GetFirstPoolForecast": ("get_pool_forecast", {"pool": "$response.body#/0/pool"}),
        "ListFirstPoolSessions": ("list_ui_pool_sessions", {"pool": "$response.body#/0/pool"}),
        "GetFirstPoolLiveActivations": ("get_live_activations", {"pool": "$response.body#/0/pool"}),
    }},
    "submit_afrr_setpoint": {"200": {
        "GetLiveActivations": ("get_live_activations", {"pool": "$response.body#/pool"}),
    }},
    "submit_dso_limit": {"201": {
        "ListCommitmentsOfLimit": ("list_commitments", {"pool": "$response.body#/pools/0",
                                                         "start": "$request.body#/start",
                                                         "end": "$request.body#/end"}),
    }},
    "list_congestion_orders": {"200": {
        "CheckCounterpartySettlement": ("check_counterparty_settlement",
                                        {"order_reference": "$response.body#/0/order_reference"}),
    }},
}


def _error(code: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS.get(code, "Error"),
            "content": {"application/json": {"schema": ERROR_REF}}}


def _location(operation_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    for item in doc["paths"].values():
        for op in item.values():
            if op.get("operationId") == operation_id:
                return op  # type: ignore[no-any-return]
    raise KeyError(f"no operation {operation_id!r} in the OpenAPI document")


def complete_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the generic error answers and the links to ``doc`` (in place) and return it."""
    for item in doc["paths"].values():
        for op in item.values():
            responses = op.setdefault("responses", {})
            has_body = "requestBody" in op
            codes = [500]
            if has_body:
                codes += [400, 413]
            if has_body or op.get("parameters"):
                codes.append(422)
            if "401" in responses:
                # Every key is rate limited (Settings.api_rate_limit_*): 429 with Retry-After.
                codes.append(429)
            for code in codes:
                responses.setdefault(str(code), _error(code))
    for source, by_status in LINKS.items():
        op = _location(source, doc)
        for status, links in by_status.items():
            response = op["responses"][status]
            for name, (target, parameters) in links.items():
                _location(target, doc)
                response.setdefault("links", {})[name] = {"operationId": target, "parameters": parameters}
    return doc


def install_contract(app: FastAPI) -> None:
    """Serve (and export) the completed document as the app's OpenAPI."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

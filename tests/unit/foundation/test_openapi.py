import json
from pathlib import Path

from vpp.commands.service import build_openapi

COMMITTED = Path(__file__).resolve().parents[3] / "openapi" / "vpp.json"


def test_committed_openapi_document_matches_the_app() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json.dumps(build_openapi(), sort_keys=True)), (
        "openapi/vpp.json is stale: run `make openapi` and commit it"
    )


def test_every_operation_has_a_stable_operation_id() -> None:
    doc = build_openapi()
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert all("__" not in op_id for op_id in ids), "operation ids must be set explicitly"


def _strings(schema: dict[str, object], components: dict[str, dict[str, object]], seen: set[str]) -> list[dict]:
    """Every string schema reachable from ``schema`` (through refs, unions, arrays and properties)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _strings(components[name], components, seen)
    found: list[dict] = [schema] if schema.get("type") == "string" else []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):  # type: ignore[attr-defined]
            found += _strings(sub, components, seen)
    if isinstance(schema.get("items"), dict):
        found += _strings(schema["items"], components, seen)  # type: ignore[arg-type]
    for sub in (schema.get("properties") or {}).values():  # type: ignore[attr-defined]
        found += _strings(sub, components, seen)
    return found


def test_every_string_a_caller_sends_states_what_it_may_hold() -> None:
    """A pattern, an enum, a format or a length: an unconstrained string is where NUL reached PostgreSQL (a 500)."""
    doc = build_openapi()
    components = doc["components"]["schemas"]
    loose = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            # A path id may be any text: one that names nothing (NUL included, see vpp.api.middleware) is a 404.
            schemas = [(p["name"], p["schema"]) for p in op.get("parameters", []) if p["in"] != "path"]
            for media in op.get("requestBody", {}).get("content", {}).values():
                schemas.append(("body", media.get("schema", {})))
            for name, schema in schemas:
                for string in _strings(schema, components, set()):
                    if not ({"pattern", "enum", "format", "const"} & set(string)):
                        loose.append(f"{method.upper()} {path} {name}")
    assert loose == [], f"strings without a pattern/enum/format: {sorted(set(loose))}"


def test_every_page_is_bounded_and_every_body_declares_400_413_and_422() -> None:
    doc = build_openapi()
    for path, item in doc["paths"].items():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] in ("limit", "offset"):
                    assert "maximum" in param["schema"], (path, param["name"])
            if "requestBody" in op:
                assert {"400", "413", "422", "500"} <= set(op["responses"]), path
            error = op["responses"]["500"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorRead"}


def test_the_documented_session_status_enum_is_the_one_the_service_checks() -> None:
    from typing import get_args

    from vpp.sessions.router import SessionStatus
    from vpp.sessions.values import SESSION_STATUSES

    assert get_args(SessionStatus) == SESSION_STATUSES

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

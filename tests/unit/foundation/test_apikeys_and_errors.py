import json
import logging

from vpp.api.errors import status_for
from vpp.apikeys.service import hash_secret, split_key
from vpp.domain import errors
from vpp.observability import JsonFormatter, request_id_var


def test_keys_split_into_prefix_and_secret_and_malformed_ones_are_rejected() -> None:
    assert split_key("vpp_abc123_s3cr_et") == ("abc123", "s3cr_et")
    for bad in ("", "vpp", "vpp__x", "xyz_abc_def", "vpp_abc_"):
        assert split_key(bad) is None


def test_secret_hashes_depend_on_the_pepper() -> None:
    assert hash_secret("s", "p1") != hash_secret("s", "p2")
    assert hash_secret("s", "p1") == hash_secret("s", "p1")


def test_domain_errors_map_to_http_statuses_through_their_base_class() -> None:
    class StaleVersion(errors.Conflict):
        pass

    assert status_for(errors.InvalidInput("x")) == 422
    assert status_for(errors.NotFound("x")) == 404
    assert status_for(StaleVersion("x")) == 409
    assert status_for(errors.DomainError("x")) == 400


def test_json_log_lines_carry_the_request_id_and_extra_fields() -> None:
    record = logging.LogRecord("vpp.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.request_id = "req-1"
    record.duration_ms = 1.5
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello world"
    assert line["request_id"] == "req-1"
    assert line["duration_ms"] == 1.5

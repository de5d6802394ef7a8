import pytest
from pydantic import SecretStr

from vpp.commands.apikey import parse_expiry
from vpp.commands.common import CommandError
from vpp.config import Settings
from vpp.keyring import Keyring, KeyringError, derive_key, generate_key, is_sealed, key_id, parse_key

TOKEN = "peer-token-0123456789abcdefghijklmnopqrstuvwx"


def test_a_sealed_token_opens_to_itself_and_does_not_contain_it() -> None:
    ring = Keyring.of(parse_key(generate_key()))
    first, second = ring.seal(TOKEN), ring.seal(TOKEN)
    assert ring.open(first) == ring.open(second) == TOKEN
    assert first != second, "a fresh nonce per seal"
    assert TOKEN not in first and is_sealed(first) and ring.is_current(first)
    assert len(first) <= 255


def test_a_previous_key_opens_old_values_but_new_ones_are_sealed_with_the_current_key() -> None:
    old, new = parse_key(generate_key()), parse_key(generate_key())
    sealed_old = Keyring.of(old).seal(TOKEN)
    rotating = Keyring.of(new, [old])
    assert rotating.open(sealed_old) == TOKEN
    assert not rotating.is_current(sealed_old)
    assert rotating.is_current(rotating.seal(TOKEN))
    with pytest.raises(KeyringError, match=key_id(old)):
        Keyring.of(new).open(sealed_old)


def test_an_altered_value_is_refused_and_the_error_names_no_secret() -> None:
    ring = Keyring.of(parse_key(generate_key()))
    sealed = ring.seal(TOKEN)
    altered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(KeyringError) as caught:
        ring.open(altered)
    assert TOKEN not in str(caught.value)
    with pytest.raises(KeyringError):
        ring.open(TOKEN)


@pytest.mark.parametrize("bad", ["", "not base64 !!", "c2hvcnQ=", "A" * 100])
def test_a_malformed_key_is_refused(bad: str) -> None:
    with pytest.raises(KeyringError):
        parse_key(bad)


def test_settings_seal_with_vpp_token_key_and_still_open_what_the_secret_derived_key_sealed(tmp_path: object) -> None:
    key = generate_key()
    before = Settings(data_dir=tmp_path, secret_key=SecretStr("s" * 32))  # type: ignore[arg-type]
    after = Settings(data_dir=tmp_path, secret_key=SecretStr("s" * 32), token_key=SecretStr(key))  # type: ignore[arg-type]
    assert before.token_keyring.current == derive_key("s" * 32)
    assert after.token_keyring.current == parse_key(key)
    assert after.token_keyring.open(before.token_keyring.seal(TOKEN)) == TOKEN
    with pytest.raises(ValueError, match="token key"):
        Settings(data_dir=tmp_path, secret_key=SecretStr("s"), token_key=SecretStr("short"))  # type: ignore[arg-type]


def test_an_expiry_is_a_duration_or_an_iso_moment() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2027-01-01", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_expiry("2027-01-01T00:00:00+01:00", now) == datetime(2026, 12, 31, 23, tzinfo=UTC)
    with pytest.raises(CommandError):
        parse_expiry("soon", now)


def test_log_lines_mask_anything_shaped_like_an_api_key_or_an_authorization_credential() -> None:
    from vpp.observability import redact

    key = "vpp_0123456789ab_" + "S" * 43
    line = f"refused {key} and header Authorization: Token {'QUJD' * 10} / Bearer {key}"
    masked = redact(line)
    assert "S" * 20 not in masked and "QUJD" * 5 not in masked
    assert masked.startswith("refused vpp_0123456789ab_*** and header Authorization: Token ***")
    assert redact("GET /api/v1/sessions 200") == "GET /api/v1/sessions 200"

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.markets.uftp import generate_signing_keypair, seal, unseal
from adapters.markets.uftp.agr_service import compress, expand, watts
from adapters.markets.uftp.messages import PowerIsp
from vpp.config import Settings
from vpp.congestion.outbox import RetryPolicy
from vpp.congestion.values import congestion_pool, day_isp_starts, isp_start
from vpp.domain.errors import InvalidInput


def test_a_local_day_has_92_96_or_100_isps_starting_at_local_midnight_in_utc() -> None:
    assert len(day_isp_starts(date(2026, 3, 29), "Europe/Amsterdam")) == 92
    assert len(day_isp_starts(date(2026, 6, 1), "Europe/Amsterdam")) == 96
    assert len(day_isp_starts(date(2026, 10, 25), "Europe/Amsterdam")) == 100
    assert isp_start(date(2026, 6, 1), "Europe/Amsterdam", 1) == datetime(2026, 5, 31, 22, tzinfo=UTC)
    assert isp_start(date(2026, 6, 1), "Europe/Amsterdam", 69) == datetime(2026, 6, 1, 15, tzinfo=UTC)


def test_isp_numbers_outside_the_day_and_unknown_time_zones_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"outside 1\.\.96"):
        isp_start(date(2026, 6, 1), "Europe/Amsterdam", 97)
    with pytest.raises(InvalidInput, match="TimeZone"):
        day_isp_starts(date(2026, 6, 1), "Mars/Olympus")


def test_an_ean_congestion_point_maps_to_its_congestion_point_pool() -> None:
    assert congestion_pool("ean.871685900012636543") == "congestion_point:871685900012636543"
    assert congestion_pool("ea1.2026-06.grid.example:cp-1") == "congestion_point:ea1.2026-06.grid.example:cp-1"


def test_isp_runs_expand_per_isp_and_equal_neighbours_compress_back_into_runs() -> None:
    runs = (PowerIsp(start=69, duration=2, power_w=-150_000), PowerIsp(start=72, power_w=-100_000))
    assert [isp for isp, _ in expand(runs)] == [69, 70, 72]
    assert compress([(70, -150_000), (69, -150_000), (71, -100_000), (73, -100_000)]) == (
        PowerIsp(start=69, duration=2, power_w=-150_000),
        PowerIsp(start=71, duration=1, power_w=-100_000),
        PowerIsp(start=73, duration=1, power_w=-100_000),
    )
    assert watts(149.9996) == 150_000


def test_retry_delays_double_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=10, max_delay_seconds=900, give_up_after_seconds=3600)
    assert [policy.delay(n).total_seconds() for n in range(1, 10)] == [10, 20, 40, 80, 160, 320, 640, 900, 900]


def test_embedded_settings_generate_and_keep_a_uftp_key_whose_public_half_verifies(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    again = Settings(data_dir=tmp_path)

    assert settings.uftp_private_key_b64 == again.uftp_private_key_b64
    assert (tmp_path / "uftp_signing.key").stat().st_mode & 0o777 == 0o600
    assert unseal(seal(b"<x/>", settings.uftp_private_key_b64), settings.uftp_public_key_b64) == b"<x/>"


def test_a_configured_uftp_key_is_used_and_outside_embedded_mode_one_is_required(tmp_path: Path) -> None:
    keys = generate_signing_keypair()
    configured = Settings(data_dir=tmp_path, uftp_signing_key=keys.private_key_b64)  # type: ignore[arg-type]
    production = Settings(data_dir=tmp_path, redis_url="redis://x", secret_key="s")  # type: ignore[arg-type]

    assert configured.uftp_public_key_b64 == keys.public_key_b64
    with pytest.raises(ValueError, match="VPP_UFTP_SIGNING_KEY"):
        _ = production.uftp_private_key_b64

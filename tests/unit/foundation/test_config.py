from pathlib import Path

import pytest

from vpp.config import Settings


def test_defaults_are_embedded_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'vpp.sqlite3').resolve()}"


def test_embedded_secret_is_random_per_data_dir_and_stable(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).secret
    assert len(first) >= 32
    assert Settings(data_dir=tmp_path).secret == first
    assert Settings(data_dir=tmp_path / "other").secret != first


def test_production_settings_refuse_to_start_without_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="VPP_SECRET_KEY"):
        Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="VPP_SECRET_KEY"):
        Settings(data_dir=tmp_path, database_url="postgresql+psycopg://postgres@127.0.0.1/vpp")


def test_environment_switches_to_postgres_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPP_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/vpp")
    monkeypatch.setenv("VPP_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("VPP_SECRET_KEY", "s3cret")
    settings = Settings()
    assert not settings.embedded
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.secret == "s3cret"


def test_a_sqlite_path_given_explicitly_is_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    settings = Settings(data_dir=tmp_path, database_url=url)
    assert settings.embedded
    assert settings.resolved_database_url == url

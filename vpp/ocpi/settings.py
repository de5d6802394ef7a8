"""Settings of the OCPI connections feature (env ``VPP_OCPI_*``), read once by each composition root."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OcpiSettings(BaseSettings):
    """Our identity towards CPOs and the knobs of the OCPI exchange."""

    model_config = SettingsConfigDict(env_prefix="VPP_OCPI_", env_file=None, extra="ignore", frozen=True)

    country_code: str = Field("NL", min_length=2, max_length=2, description="our party's country code")
    party_id: str = Field("VPP", min_length=3, max_length=3, description="our party id")
    business_name: str = "VPP aggregator"
    website: str | None = None
    rate_limit_per_s: float = Field(200.0, gt=0, description="default inbound requests/s per connection")
    rate_limit_burst: float = Field(400.0, gt=0, description="default token-bucket size per connection")
    intake_threads: int = Field(6, ge=1, description="worker threads writing Session/Location intake")
    intake_batch_writers: int = Field(
        2, ge=0, description="Session PATCH batches written at once per process (group commit, PostgreSQL); 0 = "
        "each PATCH in a transaction of its own")
    intake_batch_max: int = Field(256, ge=1, description="most Session PATCHes written in one batch")
    fast_session_patch: bool = Field(
        True, description="answer Session PATCHes on the lean path ahead of the API's router (same answers)")
    auth_cache_seconds: float = Field(5.0, ge=0, description="how long a token verdict is cached")
    pull_interval_seconds: float = Field(3600.0, gt=0, description="periodic Sessions/CDRs/Locations resync")
    pull_overlap_seconds: float = Field(600.0, ge=0, description="date_from goes back this far past the last pull")
    pull_first_window_hours: float = Field(48.0, gt=0, description="date_from of a first Sessions pull")
    page_limit: int | None = Field(None, ge=1, description="limit we ask for on paginated pulls")
    http_timeout_seconds: float = Field(10.0, gt=0)
    profile_deadline_seconds: int = Field(60, ge=1, description="result deadline when the CPO says timeout 0")
    profile_max_deadline_seconds: int = Field(600, ge=1)
    profile_concurrency_per_cpo: int = Field(
        32, ge=1, description="profile requests in flight per CPO (one keep-alive connection each)")
    too_often_backoff_seconds: float = Field(30.0, gt=0, description="first back-off after TOO_OFTEN")
    too_often_max_backoff_seconds: float = Field(900.0, gt=0)

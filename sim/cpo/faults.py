"""Fault injection for the simulated CPO: the misbehaviour of real peers, switchable at run time."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field


class FaultConfig(BaseModel):
    """Which faults to inject; rates are shares of requests (0..1)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, description="added delay before every OCPI answer")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="share of OCPI requests answered HTTP 503")
    too_often_rate: float = Field(default=0.0, ge=0, le=1, description="share of profile requests -> TOO_OFTEN")
    lost_callback_rate: float = Field(default=0.0, ge=0, le=1, description="share of async results not sent")
    callback_delay_s: float | None = Field(
        default=None, ge=0, description="delay of every async profile result (overrides the CPO's callback_delay_s)")
    raw_tokens: bool = Field(default=False, description="send tokens without Base64 (legacy peers)")
    list_wrapped: bool = Field(default=False, description="wrap single-object data in a one-element list")
    omit_link_header: bool = Field(default=False, description="paginate without Link (X-Total-Count only)")


class FaultInjector:
    """Rolls the dice for the configured faults with its own seeded random generator."""

    def __init__(self, config: FaultConfig | None = None, seed: int | None = None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(seed)

    def hit(self, rate: float) -> bool:
        """True with probability ``rate`` (never for 0, always for 1)."""
        if rate <= 0:
            return False
        return rate >= 1 or self._rng.random() < rate

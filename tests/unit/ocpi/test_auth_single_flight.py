"""Token verdicts: requests that miss the cache while a look-up of the same header runs take its verdict."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from adapters.ocpi.v2_2_1.routers.common import Caller, OcpiAuthenticator


class _Counting(OcpiAuthenticator):
    """A look-up that takes a while and answers from a table (no database)."""

    def __init__(self, verdict: Any, fail_first: bool = False) -> None:
        super().__init__(session_factory=None, pepper="pepper", ttl_seconds=5.0)  # type: ignore[arg-type]
        self.verdict = verdict
        self.fail_first = fail_first
        self.calls = 0

    def _lookup(self, candidates: tuple[str, ...]) -> Caller | None:
        self.calls += 1
        time.sleep(0.05)
        if self.fail_first and self.calls == 1:
            raise RuntimeError("database gone")
        return self.verdict  # type: ignore[no-any-return]


def test_requests_that_miss_together_share_one_look_up() -> None:
    auth = _Counting(verdict=None)

    async def main() -> list[Caller | None]:
        return list(await asyncio.gather(*(auth.authenticate("Token abc") for _ in range(12))))

    assert asyncio.run(main()) == [None] * 12
    assert auth.calls == 1 and auth.lookups == 1
    # Cached now: no look-up at all.
    assert asyncio.run(auth.authenticate("Token abc")) is None and auth.calls == 1
    # Another header is looked up on its own.
    asyncio.run(auth.authenticate("Token other"))
    assert auth.calls == 2


def test_a_failed_look_up_fails_its_request_and_the_waiters_look_for_themselves() -> None:
    auth = _Counting(verdict=None, fail_first=True)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(auth.authenticate("Token abc") for _ in range(4)),
                                         return_exceptions=True))

    results = asyncio.run(main())
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert [r for r in results if not isinstance(r, RuntimeError)] == [None] * 3
    # The first waiter's own look-up served the other two.
    assert auth.calls == 2


def test_forget_starts_a_new_look_up_for_later_requests() -> None:
    auth = _Counting(verdict=None)

    async def main() -> None:
        first = asyncio.ensure_future(auth.authenticate("Token abc"))
        await asyncio.sleep(0.01)
        auth.forget()
        second = asyncio.ensure_future(auth.authenticate("Token abc"))
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert auth.calls == 2


if __name__ == "__main__":
    pytest.main([__file__])

"""Constrained input types of the HTTP edge: what they accept is exactly what the OpenAPI document states.

Pydantic's lax mode takes ``true`` for a number, ``"0.5"`` (a Unix time) for a date-time and ``0`` for a date;
the document promises a JSON number and an RFC 3339 string, so these types refuse anything else. Strings refuse
NUL (PostgreSQL cannot store it, and no stored value contains it); names need a visible character.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field, Strict, StringConstraints, WithJsonSchema

from vpp.domain.pools import PoolKind

NO_NUL = r"^[^\x00]*$"
# What Python's str.strip() removes (the services refuse names that strip to nothing), plus the C0 controls.
_BLANK = r"\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
VISIBLE = rf"^[^{_BLANK}][^\x00]*$"
POOL = rf"^({'|'.join(k.value for k in PoolKind)}):[^\x00]+$"

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 date-time with a UTC offset, e.g. 2025-06-01T12:00:00Z")
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("expected an ISO 8601 date, e.g. 2025-06-01")
    return value


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a JSON integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("expected a JSON integer")
        return int(value)
    return value


_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"


def _amount(value: Any) -> Any:
    if isinstance(value, str) and re.match(_DECIMAL, value):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("expected a JSON number or a decimal string such as '12.50'")
    return value


Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
"""Free text: anything but NUL (empty allowed)."""
Name = Annotated[str, StringConstraints(pattern=VISIBLE)]
"""A name or key: starts with a visible character, no NUL."""
Pool = Annotated[str, StringConstraints(min_length=3, max_length=120, pattern=POOL)]
"""A pool id ``<kind>:<key>``."""
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""An RFC 3339 date-time with an offset (never a number, never naive)."""
PoolOrKey = Annotated[str, StringConstraints(max_length=120, pattern=rf"{POOL}|^[^\x00:]+$")]
"""A pool id, or a bare key (no colon) that the operation puts under its kind."""
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
"""An ISO 8601 calendar date."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite JSON number (an integer is fine; a boolean or a numeric string is not)."""
JSON_INTEGER = BeforeValidator(_json_integer)
"""``Integer``'s check, for a bounded one: ``Annotated[int, Field(ge=..., le=...), JSON_INTEGER]`` (bounds given
after it, as ``Integer | None = Field(ge=...)``, are enforced but reach the document as unknown keywords)."""
Integer = Annotated[int, JSON_INTEGER]
"""A JSON integer (``5.0`` is one too; never a boolean, a fraction or a string)."""
Flag = Annotated[bool, Strict()]
"""A JSON boolean (never 0/1 or "true")."""
Money = Annotated[Decimal, BeforeValidator(_amount), Field(allow_inf_nan=False),
                  WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": _DECIMAL}]})]
"""An amount as a JSON number or a decimal string (exact), kept as a Decimal."""

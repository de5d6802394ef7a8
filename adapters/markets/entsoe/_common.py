"""Helpers shared by the ENTSO-E document modules: timestamps, durations, EIC codes, XML plumbing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from lxml import etree

from vpp.domain.errors import InvalidInput

KW_PER_MW = 1000.0
ISP = timedelta(minutes=15)

# EIC: 2-digit issuing office, object type letter, 12 characters, check character (not recomputed here).
_EIC_PATTERN = re.compile(r"^[0-9]{2}[A-Z][A-Z0-9-]{12}[A-Z0-9]$")
_DURATION_PATTERN = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


class Direction(StrEnum):
    """Flow direction codes (ENTSO-E DirectionTypeList): UP = less consumption, DOWN = more consumption."""

    UP = "A01"
    DOWN = "A02"


class CodingScheme(StrEnum):
    """Coding schemes for party and area identifiers."""

    EIC = "A01"
    GS1 = "A10"


def check_eic(value: str, what: str) -> str:
    """Return ``value`` if it looks like a 16-character EIC code, else raise InvalidInput."""
    if not _EIC_PATTERN.match(value):
        raise InvalidInput(f"{what} {value!r} is not a 16-character EIC code", details={"field": what})
    return value


def require_utc(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC; naive datetimes are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be timezone-aware", details={"field": what})
    return value.astimezone(UTC)


def require_quarter_hour(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC if it sits on the 15-minute grid, else raise InvalidInput."""
    utc = require_utc(value, what)
    if utc.second or utc.microsecond or utc.minute % 15:
        raise InvalidInput(f"{what} {utc.isoformat()} is not on the 15-minute grid", details={"field": what})
    return utc


def format_minute(value: datetime) -> str:
    """Format as ESMP YMDHM (``2025-06-30T22:00Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def format_second(value: datetime) -> str:
    """Format as ESMP_DateTime (``2025-06-30T22:00:05Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an ESMP timestamp with or without seconds into an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def format_duration(value: timedelta) -> str:
    """Format a positive whole-minute timedelta as an ISO 8601 duration (``PT4H``, ``PT15M``)."""
    total_minutes, remainder = divmod(int(value.total_seconds()), 60)
    if remainder or total_minutes <= 0:
        raise InvalidInput(f"duration {value} is not a positive whole number of minutes")
    hours, minutes = divmod(total_minutes, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")


def parse_duration(text: str) -> timedelta:
    """Parse the day/time subset of ISO 8601 durations that market documents use."""
    match = _DURATION_PATTERN.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise InvalidInput(f"unsupported duration {text!r}")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def money(value: float) -> str:
    """Format a price to the 0.01 EUR resolution of the markets (half-up rounding)."""
    return str(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def whole_mw(power_kw: float, what: str) -> int:
    """Convert a kW magnitude to whole MW, refusing fractions of a MW."""
    mw = power_kw / KW_PER_MW
    rounded = round(mw)
    if abs(mw - rounded) > 1e-6:
        raise InvalidInput(
            f"{what} {power_kw} kW is not a whole number of MW", details={"field": what, "value_kw": power_kw}
        )
    return rounded


class ElementBuilder:
    """Appends namespaced children in XSD sequence order."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def root(self, tag: str) -> etree._Element:
        # lxml-stubs do not allow the None key that makes the namespace the default one.
        nsmap: Any = {None: self.namespace}
        return etree.Element(f"{{{self.namespace}}}{tag}", nsmap=nsmap)

    def add(self, parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{self.namespace}}}{tag}", attrib=attributes or None)
        if text is not None:
            child.text = text
        return child

    def add_interval(self, parent: etree._Element, tag: str, start: datetime, end: datetime) -> None:
        interval = self.add(parent, tag)
        self.add(interval, "start", format_minute(start))
        self.add(interval, "end", format_minute(end))


def element_builder(namespace: str) -> ElementBuilder:
    """Return a builder that creates elements in ``namespace``."""
    return ElementBuilder(namespace)


def to_bytes(root: etree._Element) -> bytes:
    """Serialise a document as UTF-8 XML with declaration."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


class Reader:
    """Reads children of one namespace, raising InvalidInput on missing mandatory elements."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def find(self, parent: etree._Element, path: str) -> etree._Element | None:
        qualified = "/".join(f"{{{self.namespace}}}{part}" for part in path.split("/"))
        return parent.find(qualified)

    def findall(self, parent: etree._Element, tag: str) -> list[etree._Element]:
        return parent.findall(f"{{{self.namespace}}}{tag}")

    def text(self, parent: etree._Element, path: str) -> str:
        element = self.find(parent, path)
        if element is None or element.text is None:
            raise InvalidInput(f"missing element {path}")
        return element.text.strip()

    def optional_text(self, parent: etree._Element, path: str) -> str | None:
        element = self.find(parent, path)
        return None if element is None or element.text is None else element.text.strip()


def reader(namespace: str) -> Reader:
    """Return a reader for elements in ``namespace``."""
    return Reader(namespace)


def parse_root(xml: bytes, namespace: str, tag: str) -> etree._Element:
    """Parse ``xml`` safely and check its root element."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"not well-formed XML: {exc}") from exc
    expected = f"{{{namespace}}}{tag}"
    if root.tag != expected:
        raise InvalidInput(f"expected root element {expected}, got {root.tag}")
    return root

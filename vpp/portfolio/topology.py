"""Use cases of the grid topology: congestion points, sites, which locations sit where, site loads."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.portfolio.tables import CongestionPoint, Site, SiteLoad, SiteLocation

CATEGORIES = ("home", "public", "workplace")
IMPORT_COLUMNS = ("ean", "dso", "site_id", "site_capacity_kw", "party", "location_id")
IMPORT_LENGTHS = {"ean": 64, "dso": 120, "site_id": 64, "location_id": 36, "bidding_zone": 16}  # the columns


def party_key(party: str) -> str:
    """``NL/CPA`` (or ``NL-CPA``, ``NLCPA``) as the case-folded key the OCPI tables use."""
    compact = party.replace("/", "").replace("-", "").replace("*", "").strip()
    if len(compact) != 5:
        raise InvalidInput(f"party {party!r} must be a country code and a party id, e.g. NL/CPA")
    return f"{compact[:2]}/{compact[2:]}".casefold()


def _positive_or_none(value: float | None, field: str) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{field} must be a positive number of kW, got {value}")
    return value


def upsert_congestion_point(session: Session, *, ean: str, dso: str, name: str | None = None,
                            max_kw: float | None = None) -> CongestionPoint:
    """Create or update a congestion point."""
    if not ean.strip() or not dso.strip():
        raise InvalidInput("a congestion point needs an EAN and a DSO")
    row = session.get(CongestionPoint, ean.strip())
    if row is None:
        row = CongestionPoint(ean=ean.strip(), dso=dso.strip())
        session.add(row)
    row.dso, row.name, row.max_kw = dso.strip(), name, _positive_or_none(max_kw, "max_kw")
    row.updated_at = utcnow()
    session.flush()
    return row


def upsert_site(session: Session, *, site_id: str, name: str | None = None, capacity_kw: float | None = None,
                congestion_point_ean: str | None = None, bidding_zone: str = "NL",
                category: str = "public") -> Site:
    """Create or update a site."""
    if not site_id.strip():
        raise InvalidInput("site_id must not be empty")
    if category not in CATEGORIES:
        raise InvalidInput(f"category {category!r} is unknown; one of {list(CATEGORIES)}")
    if congestion_point_ean is not None and session.get(CongestionPoint, congestion_point_ean) is None:
        raise NotFound(f"congestion point {congestion_point_ean!r} does not exist")
    row = session.get(Site, site_id.strip())
    if row is None:
        row = Site(id=site_id.strip())
        session.add(row)
    row.name, row.capacity_kw = name, _positive_or_none(capacity_kw, "capacity_kw")
    row.congestion_point_ean, row.bidding_zone, row.category = congestion_point_ean, bidding_zone, category
    row.updated_at = utcnow()
    session.flush()
    return row


def assign_location(session: Session, *, site_id: str, party: str, location_id: str) -> SiteLocation:
    """Put a CPO location on a site (moving it if it was elsewhere)."""
    if session.get(Site, site_id) is None:
        raise NotFound(f"site {site_id!r} does not exist")
    if not location_id.strip():
        raise InvalidInput("location_id must not be empty")
    key = (party_key(party), location_id.strip().casefold())
    row = session.get(SiteLocation, key)
    if row is None:
        row = SiteLocation(party_key=key[0], location_key=key[1], site_id=site_id)
        session.add(row)
    row.site_id = site_id
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What a topology import changed."""

    congestion_points: int
    sites: int
    locations: int


def import_topology_csv(session: Session, text: str) -> ImportSummary:
    """Import ``ean,dso,site_id,site_capacity_kw,party,location_id[,category,bidding_zone,cp_max_kw]`` rows.

    All rows are checked before anything is written; an error names the line and the field.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        missing = [c for c in IMPORT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"CSV header lacks column(s) {missing}; expected at least {list(IMPORT_COLUMNS)}")
        rows = list(reader)
    except csv.Error as exc:
        raise InvalidInput(f"not a readable CSV: {exc}") from exc
    if not rows:
        raise InvalidInput("CSV has no data rows")
    parsed = []
    for line, row in enumerate(rows, start=2):
        try:
            capacity = float(row["site_capacity_kw"]) if (row.get("site_capacity_kw") or "").strip() else None
            cp_max = float(row["cp_max_kw"]) if (row.get("cp_max_kw") or "").strip() else None
        except ValueError as exc:
            raise InvalidInput(f"line {line}: site_capacity_kw / cp_max_kw must be numbers ({exc})") from exc
        for field in ("ean", "dso", "site_id", "party", "location_id"):
            if not (row.get(field) or "").strip():
                raise InvalidInput(f"line {line}: {field} is empty")
        for field, longest in IMPORT_LENGTHS.items():
            if len((row.get(field) or "").strip()) > longest:
                raise InvalidInput(f"line {line}: {field} is longer than {longest} characters")
        category = (row.get("category") or "public").strip() or "public"
        if category not in CATEGORIES:
            raise InvalidInput(f"line {line}: category {category!r} is unknown; one of {list(CATEGORIES)}")
        try:
            party_key(row["party"])
            _positive_or_none(capacity, "site_capacity_kw")
            _positive_or_none(cp_max, "cp_max_kw")
        except InvalidInput as exc:
            raise InvalidInput(f"line {line}: {exc.message}") from exc
        parsed.append((row, capacity, cp_max, category))
    points, sites, locations = set(), set(), 0
    for row, capacity, cp_max, category in parsed:
        ean = row["ean"].strip()
        if ean not in points:
            upsert_congestion_point(session, ean=ean, dso=row["dso"], max_kw=cp_max)
            points.add(ean)
        site_id = row["site_id"].strip()
        if site_id not in sites:
            upsert_site(session, site_id=site_id, capacity_kw=capacity, congestion_point_ean=ean,
                        bidding_zone=(row.get("bidding_zone") or "NL").strip() or "NL", category=category)
            sites.add(site_id)
        assign_location(session, site_id=site_id, party=row["party"], location_id=row["location_id"])
        locations += 1
    return ImportSummary(congestion_points=len(points), sites=len(sites), locations=locations)


def put_site_load(session: Session, site_id: str, points: Sequence[tuple[datetime, float]]) -> int:
    """Replace a site's non-EV load over the span of ``points`` (ISP start, kW)."""
    if session.get(Site, site_id) is None:
        raise NotFound(f"site {site_id!r} does not exist")
    if not points:
        raise InvalidInput("no load points given")
    for at, load_kw in points:
        if at.tzinfo is None:
            raise InvalidInput(f"time {at.isoformat()} has no time zone")
        if at.minute % 15 or at.second or at.microsecond:
            raise InvalidInput(f"time {at.isoformat()} is not on the 15-minute grid")
        if not math.isfinite(load_kw):
            raise InvalidInput(f"load at {at.isoformat()} is not a number")
    starts = [p[0] for p in points]
    if len(set(starts)) < len(starts):
        raise InvalidInput("an ISP is given more than once")
    session.execute(delete(SiteLoad).where(SiteLoad.site_id == site_id, SiteLoad.isp_start >= min(starts),
                                           SiteLoad.isp_start <= max(starts)))
    session.add_all(SiteLoad(site_id=site_id, isp_start=at, load_kw=kw) for at, kw in points)
    session.flush()
    return len(points)


def list_sites(session: Session) -> list[Site]:
    """Every site."""
    return list(session.scalars(select(Site).order_by(Site.id)))


def list_congestion_points(session: Session) -> list[CongestionPoint]:
    """Every congestion point."""
    return list(session.scalars(select(CongestionPoint).order_by(CongestionPoint.ean)))

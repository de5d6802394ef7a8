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
from vpp.domain.sites import Battery, GridConnection, SiteEquipment
from vpp.portfolio import sites as behind_the_meter
from vpp.portfolio.tables import CongestionPoint, Site, SiteEquipmentRow, SiteLoad, SiteLocation

CATEGORIES = ("home", "public", "workplace")
IMPORT_COLUMNS = ("ean", "dso", "site_id", "site_capacity_kw", "party", "location_id")
# Optional columns of a site's equipment behind the meter (issue 19); the tariff is stated over the API.
EQUIPMENT_COLUMNS = ("import_max_kw", "export_max_kw", "subscription_kva", "pv_kwp", "battery_kwh", "battery_kw",
                     "battery_efficiency", "battery_min_soc_pct", "battery_max_soc_pct", "battery_cycle_eur_per_kwh")
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
    """Import ``ean,dso,site_id,site_capacity_kw,party,location_id[,category,bidding_zone,cp_max_kw]`` rows,
    optionally with a site's equipment (``EQUIPMENT_COLUMNS``: connection limits, kVA subscription, PV, battery).

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
    equipment: dict[str, SiteEquipment] = {}
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
        site_key = row["site_id"].strip()
        if site_key not in equipment:
            found = _equipment_of_row(session, row, line)
            if found is not None:
                equipment[site_key] = found
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
    for found in equipment.values():
        behind_the_meter.put_equipment(session, found, None)
    return ImportSummary(congestion_points=len(points), sites=len(sites), locations=locations)


def _equipment_of_row(session: Session, row: dict[str, str], line: int) -> SiteEquipment | None:
    """The equipment stated on a CSV line (None without any), checked as the API checks it."""
    raw = {c: (row.get(c) or "").strip() for c in EQUIPMENT_COLUMNS}
    if not any(raw.values()):
        return None
    try:
        values = {c: float(v) for c, v in raw.items() if v}
    except ValueError as exc:
        raise InvalidInput(f"line {line}: equipment columns must be numbers ({exc})") from exc
    try:
        battery = None
        if "battery_kwh" in values or "battery_kw" in values:
            if "battery_kwh" not in values or "battery_kw" not in values:
                raise InvalidInput("a battery needs battery_kwh and battery_kw")
            battery = Battery.from_pct(
                capacity_kwh=values["battery_kwh"], power_kw=values["battery_kw"],
                efficiency=values.get("battery_efficiency", 0.95), min_soc_pct=values.get("battery_min_soc_pct", 0.0),
                max_soc_pct=values.get("battery_max_soc_pct", 100.0),
                cycle_cost_eur_per_kwh=values.get("battery_cycle_eur_per_kwh", 0.0))
        found = SiteEquipment(
            site_id=row["site_id"].strip(), pv_kwp=values.get("pv_kwp", 0.0), battery=battery,
            connection=GridConnection(import_max_kw=values.get("import_max_kw"),
                                      export_max_kw=values.get("export_max_kw"),
                                      subscription_kva=values.get("subscription_kva")))
        stored = session.scalars(select(SiteLoad.load_kw).where(SiteLoad.site_id == found.site_id)).all()
        behind_the_meter.check_equipment(found, [float(v) for v in stored])
    except InvalidInput as exc:
        raise InvalidInput(f"line {line}: {exc.message}") from exc
    return found


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
    equipment = session.get(SiteEquipmentRow, site_id)
    if equipment is not None:
        behind_the_meter.equipment_of(equipment).connection.check_base_load([kw for _, kw in points])
    session.execute(delete(SiteLoad).where(SiteLoad.site_id == site_id, SiteLoad.isp_start >= min(starts),
                                           SiteLoad.isp_start <= max(starts)))
    session.add_all(SiteLoad(site_id=site_id, isp_start=at, load_kw=kw) for at, kw in points)
    behind_the_meter.mark_series_written(session, [site_id], "load", min(starts), max(starts))
    session.flush()
    return len(points)


def list_sites(session: Session) -> list[Site]:
    """Every site."""
    return list(session.scalars(select(Site).order_by(Site.id)))


def list_congestion_points(session: Session) -> list[CongestionPoint]:
    """Every congestion point."""
    return list(session.scalars(select(CongestionPoint).order_by(CongestionPoint.ean)))

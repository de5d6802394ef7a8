"""The offline entry point: a JSON-like instance with sessions and groups by id."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from vpp.algorithms.allocation._solve import allocate
from vpp.algorithms.allocation._types import AllocationProblem
from vpp.domain.errors import InvalidInput


def allocate_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Allocate an offline JSON-like instance: sessions and groups by id in, setpoints by id out."""
    sessions = instance.get("sessions")
    if not isinstance(sessions, list):
        raise InvalidInput("sessions: must be a list")
    try:
        target_kw = float(instance["target_kw"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("target_kw: missing or not a number") from exc
    ids: list[str] = []
    columns: dict[str, list[float]] = {
        k: [] for k in ("min_kw", "max_kw", "energy_needed_kwh", "hours_to_departure", "current_kw")
    }
    for index, session in enumerate(sessions):
        if not isinstance(session, Mapping) or "id" not in session:
            raise InvalidInput(f"sessions[{index}]: must be an object with an id")
        ids.append(str(session["id"]))
        for key, values in columns.items():
            try:
                values.append(float(session.get(key, 0.0) if key == "current_kw" else session[key]))
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput(f"sessions[{index}].{key}: missing or not a number") from exc
    index_of = {sid: i for i, sid in enumerate(ids)}
    if len(index_of) != len(ids):
        raise InvalidInput("sessions: duplicate session id")
    for key in ("min_kw", "max_kw"):
        if not np.isfinite(columns[key]).all():
            raise InvalidInput(f"sessions.{key}: must be finite")
    for index, (low, high) in enumerate(zip(columns["min_kw"], columns["max_kw"], strict=True)):
        if low > high:
            raise InvalidInput(f"sessions[{index}].min_kw: above max_kw (session {ids[index]})")
    for index, hours in enumerate(columns["hours_to_departure"]):
        if hours < 0:
            raise InvalidInput(f"sessions[{index}].hours_to_departure: negative (session {ids[index]})")

    raw_groups = instance.get("groups", [])
    if not isinstance(raw_groups, list):
        raise InvalidInput("groups: must be a list")
    member_session: list[int] = []
    member_group: list[int] = []
    group_max: list[float] = []
    group_min: list[float] = []
    group_ids: set[str] = set()
    for gi, grp in enumerate(raw_groups):
        if not isinstance(grp, Mapping) or "id" not in grp:
            raise InvalidInput(f"groups[{gi}]: must be an object with an id")
        gid = str(grp["id"])
        if gid in group_ids:
            raise InvalidInput(f"groups[{gi}].id: duplicate group id {gid}")
        group_ids.add(gid)
        try:
            group_max.append(float(grp.get("max_kw", np.inf)))
            group_min.append(float(grp.get("min_kw", -np.inf)))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"groups[{gi}].max_kw/min_kw: not a number") from exc
        members = grp.get("members", [])
        if not isinstance(members, list):
            raise InvalidInput(f"groups[{gi}].members: must be a list of session ids")
        if len(set(map(str, members))) != len(members):
            raise InvalidInput(f"groups[{gi}].members: duplicate session id in group {gid}")
        for member in members:
            if str(member) not in index_of:
                raise InvalidInput(f"groups[{gi}].members: unknown session id {member}")
            member_session.append(index_of[str(member)])
            member_group.append(gi)

    problem = AllocationProblem(
        min_kw=np.asarray(columns["min_kw"]),
        max_kw=np.asarray(columns["max_kw"]),
        energy_needed_kwh=np.asarray(columns["energy_needed_kwh"]),
        hours_to_departure=np.asarray(columns["hours_to_departure"]),
        current_kw=np.asarray(columns["current_kw"]),
        target_kw=target_kw,
        member_session=np.asarray(member_session, dtype=np.int64),
        member_group=np.asarray(member_group, dtype=np.int64),
        group_max_kw=np.asarray(group_max, dtype=np.float64),
        group_min_kw=np.asarray(group_min, dtype=np.float64),
        needs_outrank_target=bool(instance.get("needs_outrank_target", True)),
    )
    started = time.perf_counter()
    result = allocate(problem)
    solve_ms = (time.perf_counter() - started) * 1e3
    return {
        "setpoints_kw": {sid: float(v) for sid, v in zip(ids, result.setpoints_kw, strict=True)},
        "total_kw": result.total_kw,
        "solve_ms": solve_ms,
    }

"""CDR reconciliation: each session's CDR energy against the integral of its readings."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vpp.algorithms.settlement import Reconciliation, reconcile_cdrs
from vpp.settlement.sessions import MeterGrid, PoolSessions
from vpp.settlement.values import SettlementParams

BoolArray = npt.NDArray[np.bool_]


def reconcile(sessions: PoolSessions, meter: MeterGrid, params: SettlementParams) -> Reconciliation:
    """Compare every session's CDR energy with its readings (sessions without a CDR are checked against 0).

    The readings become a cumulative register: 0 at each session's first period start and the running integral
    at each period end. An active session has no end yet, so only its start and inner gaps are checked.
    """
    n = sessions.n
    counts = np.bincount(meter.period_session, minlength=n)
    has = counts > 0
    first = (np.cumsum(counts) - counts)[has]
    register_session = np.concatenate([np.flatnonzero(has), meter.period_session])
    register_time_h = np.concatenate([meter.period_start_s[first], meter.period_end_s]) / 3600.0
    register_kwh = np.concatenate([np.zeros(int(has.sum())), meter.period_cumulative_kwh])
    end_h = np.where(np.isnan(sessions.end_s), -np.inf, sessions.end_s / 3600.0)
    return reconcile_cdrs(
        np.nan_to_num(sessions.cdr_energy_kwh), register_session, register_time_h, register_kwh,
        session_start_h=sessions.start_s / 3600.0, session_end_h=end_h,
        abs_tolerance_kwh=params.cdr_abs_tolerance_kwh, rel_tolerance=params.cdr_rel_tolerance,
        max_gap_h=params.max_reading_gap_h,
    )

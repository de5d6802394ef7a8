"""The soak's slowest acknowledgements outside the faults, placed after the fault they follow."""

from __future__ import annotations

from sim.soak.load import SetpointSent
from sim.soak.report import FaultWindow, slowest_acks


def test_the_slowest_acks_outside_faults_say_which_fault_they_follow() -> None:
    origin = 1000.0
    windows = [FaultWindow("redis_restart", 1010.0, 1016.0, {}), FaultWindow("postgres_restart", 1030.0, 1040.0, {})]
    sent = [
        SetpointSent("p", 1, 1005.0, 20.0),
        SetpointSent("p", 2, 1012.0, 900.0),  # inside the Redis restart: not counted
        SetpointSent("p", 3, 1017.5, 300.0),
        SetpointSent("p", 4, 1041.0, 450.0),
        SetpointSent("p", 5, 1050.0, None),  # not acknowledged
        SetpointSent("p", 6, 1060.0, 30.0),
    ]
    rows = slowest_acks(sent, windows, origin, count=3)
    assert rows == [
        {"at_s": 41.0, "ms": 450.0, "pool": "p", "after_fault": "postgres_restart", "s_after_fault_end": 1.0},
        {"at_s": 17.5, "ms": 300.0, "pool": "p", "after_fault": "redis_restart", "s_after_fault_end": 1.5},
        {"at_s": 60.0, "ms": 30.0, "pool": "p", "after_fault": "postgres_restart", "s_after_fault_end": 20.0},
    ]
    assert slowest_acks(sent[:1], windows, origin) == [
        {"at_s": 5.0, "ms": 20.0, "pool": "p", "after_fault": None, "s_after_fault_end": None}]

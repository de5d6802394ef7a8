"""The progress line's time left counts the steps left on the runner's grid: an aFRR window's 4-s steps count as
many steps, not as the few simulated minutes they cover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

from vpp.simulation.runner import Progress, Simulation
from vpp.simulation.scenario import load_scenario


def test_steps_left_count_the_afrr_window_in_4_s_steps(tmp_path: Path) -> None:
    simulation = Simulation(load_scenario("demo"), data_dir=tmp_path, progress=False)
    simulation.plan()

    def steps_left(at: datetime) -> float:
        return sum(simulation._steps_by_length(at).values())

    window = datetime(2024, 6, 12, 15, 30, tzinfo=UTC)  # 17:30 in Amsterdam, to 17:45 plus 60 s of tail
    before, after = steps_left(window), steps_left(window + timedelta(seconds=960))
    assert round(before - after) == 240
    # The delivery day outside the window: 900-s steps; the warm-up (06:00 the day before): hourly steps.
    delivery_start = datetime(2024, 6, 11, 22, 0, tzinfo=UTC)
    assert round(steps_left(delivery_start) - steps_left(window)) == 70
    assert round(steps_left(simulation.timeline.begin.astimezone(UTC))
                 - steps_left(delivery_start)) == 18


def test_time_left_counts_each_length_of_step_at_its_own_wall_time() -> None:
    """Ten 900-s steps took 2 s each, then twenty 4-s aFRR steps 0.1 s each: 30 quarter-hour steps and 100 aFRR
    steps left take 30 x 2 + 100 x 0.1 = 70 s; hourly warm-up steps not run since take the nearest length's rate
    (900 s: 2 s each)."""
    progress = Progress(False, UTC)
    progress.expected_end = datetime(2024, 6, 13, tzinfo=UTC)
    progress.steps_left = lambda at: {900.0: 30.0, 4.0: 100.0}
    at = datetime(2024, 6, 12, tzinfo=UTC)
    clock = [0.0]
    with patch("vpp.simulation.runner.wallclock.monotonic", side_effect=lambda: clock[0]):
        progress.show(at, "delivery", 0)
        for _ in range(10):
            clock[0] += 2.0
            at += timedelta(seconds=900)
            progress.show(at, "delivery", 0)
        for _ in range(20):
            clock[0] += 0.1
            at += timedelta(seconds=4)
            progress.show(at, "delivery", 0)
    assert progress._left(at) == ", ~   70 s left"
    progress.steps_left = lambda at: {3600.0: 5.0}
    assert progress._left(at) == ", ~   10 s left"

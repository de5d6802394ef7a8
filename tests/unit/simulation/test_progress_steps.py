"""The progress line's time left counts the steps left on the runner's grid: an aFRR window's 4-s steps count as
many steps, not as the few simulated minutes they cover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from vpp.simulation.runner import Progress, Simulation
from vpp.simulation.scenario import load_scenario


def test_steps_left_count_the_afrr_window_in_4_s_steps(tmp_path: Path) -> None:
    simulation = Simulation(load_scenario("demo"), data_dir=tmp_path, progress=False)
    simulation.plan()
    window = datetime(2024, 6, 12, 15, 30, tzinfo=UTC)  # 17:30 in Amsterdam, to 17:45 plus 60 s of tail
    before, after = simulation._steps_left(window), simulation._steps_left(window + timedelta(seconds=960))
    assert round(before - after) == 240
    # The delivery day outside the window: 900-s steps; the warm-up (06:00 the day before): hourly steps.
    delivery_start = datetime(2024, 6, 11, 22, 0, tzinfo=UTC)
    assert round(simulation._steps_left(delivery_start) - simulation._steps_left(window)) == 70
    assert round(simulation._steps_left(simulation.timeline.begin.astimezone(UTC))
                 - simulation._steps_left(delivery_start)) == 18


def test_time_left_is_steps_left_at_the_recent_wall_time_per_step() -> None:
    progress = Progress(False, UTC)
    progress.expected_end = datetime(2024, 6, 13, tzinfo=UTC)
    progress.steps_left = lambda at: 100.0
    at = datetime(2024, 6, 12, tzinfo=UTC)
    progress._samples.extend([(0.0, at.timestamp(), 1), (10.0, at.timestamp() + 40.0, 11)])
    assert progress._left(at) == ", ~  100 s left"

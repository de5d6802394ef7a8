"""`vpp serve --workers N` and `vpp worker --metrics-port`: with PROMETHEUS_MULTIPROC_DIR every process writes its
samples to the directory, and one scrape of any of them returns the sum."""

import os
import subprocess
import sys
from pathlib import Path

INCREMENT = (
    "from vpp.observability import HTTP_REQUESTS, AFRR_SETPOINT_LAG\n"
    "HTTP_REQUESTS.labels('GET', '/x', '200').inc()\n"
    "AFRR_SETPOINT_LAG.observe(0.3)\n"
)
SCRAPE = "import sys\nfrom vpp.observability import render_metrics\nsys.stdout.write(render_metrics().decode())\n"


def _python(code: str, metrics_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout


def test_a_scrape_sums_the_samples_of_every_process_sharing_the_directory(tmp_path: Path) -> None:
    for _ in range(2):
        _python(INCREMENT, tmp_path)
    scraped = _python(SCRAPE, tmp_path)
    assert 'vpp_http_requests_total{method="GET",route="/x",status="200"} 2.0' in scraped
    assert "vpp_afrr_setpoint_lag_seconds_count 2.0" in scraped


def test_serve_with_several_workers_prepares_a_fresh_directory(tmp_path: Path) -> None:
    from vpp.commands.service import METRICS_DIR_ENV, _prepare_metrics_dir

    stale = tmp_path / "metrics" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    before = os.environ.get(METRICS_DIR_ENV)
    try:
        _prepare_metrics_dir(str(stale.parent))
        assert os.environ[METRICS_DIR_ENV] == str(stale.parent) and not stale.exists()
    finally:
        if before is None:
            os.environ.pop(METRICS_DIR_ENV, None)
        else:
            os.environ[METRICS_DIR_ENV] = before

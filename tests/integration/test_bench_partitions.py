"""``vpp bench partitions`` at a tiny size on PostgreSQL: it fills what it says, measures both days, drops its
databases. The timings are not asserted; the counts are."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.conftest import require_service
from vpp.benchmarks import partitions

pytestmark = pytest.mark.slow


def test_the_partitions_bench_fills_measures_and_cleans_up() -> None:
    url = require_service("VPP_TEST_DATABASE_URL", "PostgreSQL")
    parser = argparse.ArgumentParser()
    partitions.add_args(parser)
    args = parser.parse_args(["--days", "3", "--cars", "20", "--readings", "6", "--pools", "2", "--intake", "5",
                              "--step-seconds", "900", "--database-url", url])
    out = partitions.run(args)
    for variant in ("partitioned", "plain"):
        figures = out[variant]
        assert figures["first_day"]["day"] == 2 and figures["last_day"]["day"] == 3
        # Each day's 20 x 6 readings, and 3 rounds of 5 intake readings after the first measured day.
        assert figures["first_day"]["readings_stored"] == 2 * 120
        assert figures["last_day"]["readings_stored"] == 3 * 120 + 15
        assert set(figures["ratio"]) == {"copy_rows_per_s", "intake_rows_per_s", "flexibility_ms", "settlement_ms"}
    admin = create_engine(make_url(url).set(database="postgres"))
    with admin.connect() as conn:
        left = conn.scalars(text("SELECT datname FROM pg_database WHERE datname LIKE :name"),
                            {"name": f"{make_url(url).database}_bench_%"}).all()
    admin.dispose()
    assert left == []

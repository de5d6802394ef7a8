"""The chaos soak (``vpp soak``): the production stack on its own PostgreSQL and Redis, under load and faults."""

from sim.soak.run import SoakConfig, run_soak
from sim.soak.services import binaries_available

__all__ = ["SoakConfig", "binaries_available", "run_soak"]

"""The layering contract in .importlinter covers every part of vpp: a new package must be given its layer."""

import configparser
import pkgutil
from pathlib import Path

import vpp
import vpp.api

CONTRACTS = Path(__file__).resolve().parents[3] / ".importlinter"


def _layered_modules() -> set[str]:
    config = configparser.ConfigParser()
    config.read(CONTRACTS)
    layers = config["importlinter:contract:layers"]["layers"]
    return {name.strip() for line in layers.splitlines() for name in line.split(":") if name.strip()}


def test_every_package_and_module_of_vpp_has_a_layer() -> None:
    layered = _layered_modules()
    children = {f"vpp.{m.name}" for m in pkgutil.iter_modules(vpp.__path__)}
    # vpp.api is split: its composition root is an edge, the plumbing routers use sits with the features.
    children.discard("vpp.api")
    children |= {f"vpp.api.{m.name}" for m in pkgutil.iter_modules(vpp.api.__path__)}
    assert sorted(children - layered) == []

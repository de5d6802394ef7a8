"""``vpp secrets generate-key|rotate-key``: the key that seals the tokens we present to CPOs.

Rotation, with no downtime: generate a new key; give every process ``VPP_TOKEN_KEY=<new>`` and
``VPP_TOKEN_KEYS_PREVIOUS=<old>`` (restart them; they seal with the new key and still open the old); run
``vpp secrets rotate-key`` once, which re-seals every stored token with the new key; then drop the old key.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpp.commands.common import load_settings, open_database, print_json


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the secrets commands."""
    p = sub.add_parser("secrets", help="the key sealing stored OCPI tokens: generate one, rotate to it")
    cmds = p.add_subparsers(dest="secrets_command", required=True)
    g = cmds.add_parser("generate-key", help="print a new random token key (base64, for VPP_TOKEN_KEY)")
    g.set_defaults(func=generate_key)
    r = cmds.add_parser("rotate-key", help="re-seal every stored token with VPP_TOKEN_KEY (old keys: "
                                           "VPP_TOKEN_KEYS_PREVIOUS)")
    r.add_argument("--json", action="store_true", help="print the counts as JSON (the only output format)")
    r.set_defaults(func=rotate_key)


def generate_key(_args: argparse.Namespace) -> int:
    """Print a new key."""
    from vpp.keyring import generate_key as new_key

    sys.stdout.write(new_key() + "\n")
    return 0


def rotate_key(_args: argparse.Namespace) -> int:
    """Re-seal every stored outgoing token with the current key, in one transaction."""
    from vpp import migrate
    from vpp.audit import service as audit
    from vpp.db import unit_of_work
    from vpp.ocpi import service as connections

    settings = load_settings()
    keyring = settings.token_keyring
    engine, factory = open_database(settings)
    try:
        if settings.embedded:
            migrate.upgrade(engine, token_keyring=keyring)
        with unit_of_work(factory) as session:
            resealed, current = connections.reseal_outgoing_tokens(session, keyring)
            audit.record(session, None, "secrets.rotate_key", target=keyring.current_id,
                         detail={"resealed": resealed, "already_current": current})
    finally:
        engine.dispose()
    print_json({"key_id": keyring.current_id, "resealed": resealed, "already_current": current})
    return 0

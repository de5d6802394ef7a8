"""``vpp uftp keygen|show-key|participant add|participant list``: our UFTP identity and the DSOs we trade with."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from vpp.commands.common import load_settings, open_database, print_json


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the UFTP commands."""
    p = sub.add_parser("uftp", help="UFTP (Shapeshifter) identity and participants")
    uftp = p.add_subparsers(dest="uftp_command", required=True)
    k = uftp.add_parser("keygen", help="print a new Ed25519 key pair (set the private one as VPP_UFTP_SIGNING_KEY)")
    k.set_defaults(func=keygen)
    s = uftp.add_parser("show-key", help="print our UFTP domain and public key (to give to DSOs)")
    s.set_defaults(func=show_key)
    participant = uftp.add_parser("participant", help="manage the DSOs we trade with")
    actions = participant.add_subparsers(dest="participant_command", required=True)
    a = actions.add_parser("add", help="register or update a DSO")
    a.add_argument("--domain", required=True)
    a.add_argument("--public-key", required=True, help="base64 Ed25519 public signing key (32 bytes)")
    a.add_argument("--endpoint", required=True, help="its message URL, e.g. https://host/shapeshifter/api/v3/message")
    a.add_argument("--congestion-point", action="append", default=[], help="e.g. ean.871685900012636543; repeatable")
    a.add_argument("--penalty-eur-per-mw", type=float, default=0.0, help="contractual penalty per MW and ISP")
    a.set_defaults(func=add_participant)
    ls = actions.add_parser("list", help="list DSOs and their congestion points")
    ls.set_defaults(func=list_participants)


def keygen(_args: argparse.Namespace) -> int:
    """Print a fresh key pair."""
    from nacl.bindings import crypto_sign_keypair

    public_key, secret_key = crypto_sign_keypair()
    print_json(
        {"private_key": base64.b64encode(secret_key).decode(), "public_key": base64.b64encode(public_key).decode()}
    )
    return 0


def show_key(_args: argparse.Namespace) -> int:
    """Print our domain and public key."""
    settings = load_settings()
    print_json({"domain": settings.uftp_domain, "role": "AGR", "public_key": settings.uftp_public_key_b64})
    return 0


def _factory() -> tuple[Any, Any]:
    from vpp import migrate

    settings = load_settings()
    engine, factory = open_database(settings)
    if settings.embedded:
        migrate.upgrade(engine)
    return engine, factory


def add_participant(args: argparse.Namespace) -> int:
    """Register or update a DSO."""
    from vpp.congestion import participants
    from vpp.db import unit_of_work

    engine, factory = _factory()
    with unit_of_work(factory) as session:
        row = participants.upsert(
            session,
            domain=args.domain,
            public_key_b64=args.public_key,
            endpoint_url=args.endpoint,
            congestion_points=args.congestion_point,
            penalty_eur_per_mw=args.penalty_eur_per_mw,
        )
        print_json({"id": row.id, "domain": row.domain, "endpoint_url": row.endpoint_url})
    engine.dispose()
    return 0


def list_participants(_args: argparse.Namespace) -> int:
    """List DSOs and their congestion points."""
    from vpp.congestion import participants
    from vpp.db import unit_of_work

    engine, factory = _factory()
    with unit_of_work(factory) as session:
        points = participants.congestion_points(session)
        print_json(
            [
                {
                    "domain": row.domain,
                    "role": row.role,
                    "public_key": row.public_key_b64,
                    "endpoint_url": row.endpoint_url,
                    "penalty_eur_per_mw": row.penalty_eur_per_mw,
                    "congestion_points": [point for domain, point in points if domain == row.domain],
                }
                for row in participants.list_participants(session)
            ]
        )
    engine.dispose()
    return 0

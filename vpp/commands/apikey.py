"""``vpp apikey create|revoke|list``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpp.commands.common import load_settings, open_database, print_json
from vpp.domain.roles import Role


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the API-key commands."""
    p = sub.add_parser("apikey", help="manage API keys")
    keys = p.add_subparsers(dest="apikey_command", required=True)
    c = keys.add_parser("create", help="create a key and print it once")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument("--name", required=True)
    c.add_argument("--json", action="store_true", help='print {"key": ..., "role": ...}')
    c.set_defaults(func=create)
    r = keys.add_parser("revoke", help="revoke a key by id or prefix")
    r.add_argument("key_id")
    r.set_defaults(func=revoke)
    ls = keys.add_parser("list", help="list keys (never their secrets)")
    ls.set_defaults(func=list_keys)


def _migrated_factory() -> tuple[Any, Any, Any]:
    from vpp import migrate

    settings = load_settings()
    engine, factory = open_database(settings)
    if settings.embedded:
        migrate.upgrade(engine)
    return settings, engine, factory


def create(args: argparse.Namespace) -> int:
    """Create a key."""
    from vpp.apikeys import service
    from vpp.db import unit_of_work

    settings, engine, factory = _migrated_factory()
    with unit_of_work(factory) as session:
        row, key = service.create(session, name=args.name, role=args.role, pepper=settings.secret)
        key_id = row.id
    engine.dispose()
    if args.json:
        print_json({"key": key, "role": args.role, "id": key_id, "name": args.name})
    else:
        sys.stdout.write(f"{key}\n")
        sys.stderr.write(f"created {args.role} key {key_id} ({args.name}); it is shown only this once\n")
    return 0


def revoke(args: argparse.Namespace) -> int:
    """Revoke a key."""
    from vpp.apikeys import service
    from vpp.db import unit_of_work

    _settings, engine, factory = _migrated_factory()
    with unit_of_work(factory) as session:
        row = service.revoke(session, args.key_id)
        print_json({"id": row.id, "revoked_at": row.revoked_at})
    engine.dispose()
    return 0


def list_keys(_args: argparse.Namespace) -> int:
    """List keys."""
    from vpp.apikeys import service
    from vpp.apikeys.schemas import ApiKeyRead
    from vpp.db import unit_of_work

    _settings, engine, factory = _migrated_factory()
    with unit_of_work(factory) as session:
        print_json([ApiKeyRead.model_validate(r).model_dump(mode="json") for r in service.list_keys(session)])
    engine.dispose()
    return 0

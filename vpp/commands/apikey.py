"""``vpp apikey create|revoke|list``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from vpp.commands.common import CommandError, load_settings, open_database, print_json
from vpp.domain.roles import Role


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the API-key commands."""
    p = sub.add_parser("apikey", help="manage API keys")
    keys = p.add_subparsers(dest="apikey_command", required=True)
    c = keys.add_parser("create", help="create a key and print it once")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument("--name", required=True)
    c.add_argument("--expires", default=None, metavar="WHEN",
                   help="when the key stops working: an ISO date/time (UTC if no zone) or a duration like 90d, 12h")
    c.add_argument("--rate-limit-per-minute", type=int, default=None,
                   help="this key's own request limit (default: VPP_API_RATE_LIMIT_PER_ROLE, else _PER_MINUTE)")
    c.add_argument("--json", action="store_true", help='print {"key": ..., "role": ...}')
    c.set_defaults(func=create)
    r = keys.add_parser("revoke", help="revoke a key by id or prefix")
    r.add_argument("key_id")
    r.set_defaults(func=revoke)
    ls = keys.add_parser("list", help="list keys (never their secrets)")
    ls.set_defaults(func=list_keys)


_UNITS = {"d": 86400, "h": 3600, "m": 60}


def parse_expiry(text: str, now: datetime) -> datetime:
    """``90d``/``12h``/``30m`` from now, or an ISO date or date-time (UTC when it names no zone)."""
    cleaned = text.strip()
    if cleaned[-1:] in _UNITS and cleaned[:-1].isdigit():
        return now + timedelta(seconds=int(cleaned[:-1]) * _UNITS[cleaned[-1]])
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError as exc:
        raise CommandError(f"--expires {text!r}: expected an ISO date/time or a duration like 90d, 12h") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _migrated_factory() -> tuple[Any, Any, Any]:
    from vpp import migrate

    settings = load_settings()
    engine, factory = open_database(settings)
    if settings.embedded:
        migrate.upgrade(engine, token_keyring=settings.token_keyring)
    return settings, engine, factory


def create(args: argparse.Namespace) -> int:
    """Create a key."""
    from vpp.apikeys import service
    from vpp.audit import service as audit
    from vpp.db import unit_of_work

    expires_at = parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None
    settings, engine, factory = _migrated_factory()
    with unit_of_work(factory) as session:
        row, key = service.create(session, name=args.name, role=args.role, pepper=settings.secret,
                                  expires_at=expires_at, rate_limit_per_minute=args.rate_limit_per_minute)
        key_id = row.id
        audit.record(session, None, "apikey.create", target=row.id,
                     detail={"prefix": row.prefix, "name": row.name, "role": row.role,
                             "expires_at": expires_at.isoformat() if expires_at else None,
                             "rate_limit_per_minute": row.rate_limit_per_minute})
    engine.dispose()
    if args.json:
        print_json({"key": key, "role": args.role, "id": key_id, "name": args.name,
                    "expires_at": expires_at.isoformat() if expires_at else None})
    else:
        sys.stdout.write(f"{key}\n")
        sys.stderr.write(f"created {args.role} key {key_id} ({args.name}); it is shown only this once\n")
    return 0


def revoke(args: argparse.Namespace) -> int:
    """Revoke a key."""
    from vpp.apikeys import service
    from vpp.audit import service as audit
    from vpp.db import unit_of_work

    _settings, engine, factory = _migrated_factory()
    with unit_of_work(factory) as session:
        row = service.revoke(session, args.key_id)
        audit.record(session, None, "apikey.revoke", target=row.id, detail={"prefix": row.prefix, "name": row.name})
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

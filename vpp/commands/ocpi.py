"""``vpp ocpi invite|register|list|pull|rotate|unregister``: CPO connections from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from vpp.commands.common import load_settings, open_database, print_json


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the OCPI commands."""
    p = sub.add_parser("ocpi", help="manage OCPI connections to CPOs")
    cmds = p.add_subparsers(dest="ocpi_command", required=True)
    i = cmds.add_parser("invite", help="create token A for a CPO that will register with us")
    i.add_argument("--name", required=True)
    i.add_argument("--json", action="store_true", help='print {"token_a": ..., "versions_url": ...}')
    i.set_defaults(func=invite)
    r = cmds.add_parser("register", help="register with a CPO that gave us its token A")
    r.add_argument("--versions-url", required=True)
    r.add_argument("--token-a", required=True)
    r.add_argument("--name", default=None, help="connection name (default: the versions URL's host)")
    r.add_argument("--raw-token", action="store_true", help="send the token un-encoded (legacy peers)")
    r.set_defaults(func=register_with)
    ls = cmds.add_parser("list", help="list connections (never their tokens)")
    ls.set_defaults(func=list_connections)
    pl = cmds.add_parser("pull", help="resync locations, sessions and CDRs from a CPO now")
    pl.add_argument("connection", help="connection id or name")
    pl.set_defaults(func=pull)
    rt = cmds.add_parser("rotate", help="rotate the tokens of a connection (credentials PUT on the CPO)")
    rt.add_argument("connection", help="connection id or name")
    rt.set_defaults(func=rotate)
    un = cmds.add_parser("unregister", help="unregister from a CPO (credentials DELETE) and forget its tokens")
    un.add_argument("connection", help="connection id or name")
    un.set_defaults(func=unregister)


def _open() -> tuple[Any, Any, Any]:
    from vpp import migrate

    settings = load_settings()
    engine, factory = open_database(settings)
    if settings.embedded:
        migrate.upgrade(engine, token_keyring=settings.token_keyring)
    return settings, engine, factory


def _context(settings: Any, factory: Any) -> Any:
    from adapters.ocpi.v2_2_1.context import OcpiContext
    from vpp.ocpi.settings import OcpiSettings

    return OcpiContext(session_factory=factory, public_url=settings.public_url, pepper=settings.secret,
                       settings=OcpiSettings(), keyring=settings.token_keyring)


def invite(args: argparse.Namespace) -> int:
    """Create a connection awaiting registration and print its token A."""
    from vpp.db import unit_of_work
    from vpp.ocpi import service
    from vpp.ocpi.router import versions_url

    settings, engine, factory = _open()
    with unit_of_work(factory) as session:
        row, token_a = service.invite(session, name=args.name, pepper=settings.secret)
        connection_id = row.id
        _audit(session, "ocpi.invite", connection_id, {"name": row.name})
    engine.dispose()
    url = versions_url(settings.public_url)
    if args.json:
        print_json({"token_a": token_a, "versions_url": url})
    else:
        sys.stdout.write(f"token A:      {token_a}\nversions URL: {url}\n")
        sys.stderr.write(f"connection {connection_id} ({args.name}) awaits the CPO's registration; "
                         "token A is shown only this once\n")
    return 0


def register_with(args: argparse.Namespace) -> int:
    """Register with a CPO (we are the credentials Sender); our server must be reachable at public_url."""
    from urllib.parse import urlsplit

    from adapters.ocpi.v2_2_1 import registration
    from vpp.ocpi.schemas import ConnectionFlags

    settings, engine, factory = _open()
    name = args.name or urlsplit(args.versions_url).netloc or args.versions_url
    try:
        connection_id = asyncio.run(
            registration.register_with(
                _context(settings, factory), name=name, versions_url=args.versions_url, token_a=args.token_a,
                flags=ConnectionFlags(raw_token=args.raw_token),
            )
        )
    finally:
        engine.dispose()
    print_json({"connection_id": connection_id, "name": name, "status": "connected"})
    return 0


def list_connections(_args: argparse.Namespace) -> int:
    """List connections."""
    from vpp.db import unit_of_work
    from vpp.ocpi import service

    _settings, engine, factory = _open()
    with unit_of_work(factory) as session:
        rows = [
            {"id": r.id, "name": r.name, "status": r.status, "initiated_by": r.initiated_by,
             "versions_url": r.versions_url, "roles": r.roles, "flags": r.flags}
            for r in service.list_connections(session)
        ]
    engine.dispose()
    print_json(rows)
    return 0


def _audit(session: Any, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    from vpp.audit import service as audit

    audit.record(session, None, action, target=target, detail=detail)


def _record(factory: Any, action: str, target: str) -> None:
    from vpp.db import unit_of_work

    with unit_of_work(factory) as session:
        _audit(session, action, target)


def _connection_id(factory: Any, ref: str) -> str:
    from vpp.db import unit_of_work
    from vpp.ocpi import service

    with unit_of_work(factory) as session:
        return service.get_or_raise(session, ref).id


def pull(args: argparse.Namespace) -> int:
    """Resync one connection now, in this process."""
    from adapters.ocpi.v2_2_1 import sync

    settings, engine, factory = _open()
    try:
        connection_id = _connection_id(factory, args.connection)
        counts = asyncio.run(sync.pull_all(_context(settings, factory), connection_id))
    finally:
        engine.dispose()
    print_json({"connection_id": connection_id, **counts})
    return 0


def rotate(args: argparse.Namespace) -> int:
    """Rotate tokens both ways."""
    from adapters.ocpi.v2_2_1 import registration

    settings, engine, factory = _open()
    try:
        connection_id = _connection_id(factory, args.connection)
        asyncio.run(registration.update_with(_context(settings, factory), connection_id))
        _record(factory, "ocpi.rotate_credentials", connection_id)
    finally:
        engine.dispose()
    print_json({"connection_id": connection_id, "rotated": True})
    return 0


def unregister(args: argparse.Namespace) -> int:
    """Unregister from the CPO."""
    from adapters.ocpi.v2_2_1 import registration

    settings, engine, factory = _open()
    try:
        connection_id = _connection_id(factory, args.connection)
        asyncio.run(registration.unregister_with(_context(settings, factory), connection_id))
        _record(factory, "ocpi.unregister", connection_id)
    finally:
        engine.dispose()
    print_json({"connection_id": connection_id, "status": "unregistered"})
    return 0

"""Helpers shared by subcommands: settings, engine, JSON output, errors."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory


class CommandError(Exception):
    """A command failed for a reason the user can act on (printed, exit code 2)."""


def load_settings() -> Settings:
    """Settings from the environment, as a clear error when they are inconsistent."""
    try:
        return Settings()
    except ValueError as exc:
        raise CommandError(f"invalid settings: {exc}") from exc


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for the configured database."""
    engine = create_db_engine(settings.resolved_database_url, pool_size=2)
    return engine, create_session_factory(engine)


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")


def read_json_file(path: str) -> Any:
    """Parse a JSON file, as a clear error when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise CommandError(f"{path}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON ({exc})") from exc


def write_json_file(path: str, obj: Any) -> None:
    """Write a JSON file (creating its folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(obj, default=str))


@contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside, as Ctrl-C does, so a command stopped by ``kill`` or a CI timeout runs
    its ``finally`` blocks and stops the servers and processes it started (the default action ends the process on
    the spot and leaves them running). Only the main thread may set a handler; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever native libraries print (solver banners) to stderr, so stdout stays one JSON object."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)

"""The soak's own PostgreSQL and Redis: started in a temporary directory on free ports, restarted by the faults.

The machine's shared servers are never touched. PostgreSQL refuses to run as root, so when we are root its
commands run as the ``postgres`` user (``runuser``) in a directory that user owns. Redis keeps nothing on disk
(``--save "" --appendonly no``), as the machine's Redis does: a restart loses every key and stream.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A server of the soak could not be started or stopped."""


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on ``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def postgres_bin() -> Path | None:
    """The directory of initdb, pg_ctl and psql: the newest /usr/lib/postgresql/*/bin, else where PATH has them."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2] or 0))
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, str(Path(found).parent))
    for candidate in reversed(candidates):
        if all((Path(candidate) / tool).exists() for tool in ("initdb", "pg_ctl", "psql")):
            return Path(candidate)
    return None


def binaries_available() -> bool:
    """Whether this machine can run the soak's own servers (PostgreSQL's initdb/pg_ctl and redis-server)."""
    return postgres_bin() is not None and shutil.which("redis-server") is not None


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


class LocalPostgres:
    """A throw-away cluster: initdb with trust authentication, listening on 127.0.0.1 only."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port or free_port()
        found = postgres_bin()
        if found is None:
            raise ServiceError("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.bin: Path = found
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the soak's database."""
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/vpp_soak"

    def _run(self, *args: str, timeout_s: float = 120) -> None:
        done = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, timeout=timeout_s,  # noqa: S603
                              check=False)
        if done.returncode != 0:
            raise ServiceError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _options(self) -> str:
        return (f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories={self.root} "
                "-c max_connections=200 -c shared_buffers=64MB")

    def start(self) -> None:
        """initdb (first time) and start; returns once it accepts connections."""
        if not self.data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if self._as_postgres:
                shutil.chown(self.root, "postgres", "postgres")
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")
        if not self._database_exists():
            self._run(str(self.bin / "psql"), "-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                      "-qc", "CREATE DATABASE vpp_soak")

    def _database_exists(self) -> bool:
        done = subprocess.run([*self._as_postgres, str(self.bin / "psql"), "-h", HOST, "-p", str(self.port),  # noqa: S603
                               "-U", "postgres", "-d", "postgres", "-tAc",
                               "SELECT 1 FROM pg_database WHERE datname = 'vpp_soak'"],
                              capture_output=True, text=True, timeout=30, check=False)
        return bool(done.stdout.strip() == "1")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions; ``immediate``: as a crash would)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 1.0) -> None:
        """Crash-stop (``immediate``: recovery from the WAL on start), stay down ``down_s``, start again."""
        self.stop("immediate")
        time.sleep(down_s)
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")

    def cleanup(self) -> None:
        """Stop whatever runs (immediate after a failed fast stop) and delete the cluster."""
        for mode in ("fast", "immediate"):
            try:
                self.stop(mode)
                break
            except (ServiceError, subprocess.TimeoutExpired):
                continue
        shutil.rmtree(self.root, ignore_errors=True)


class LocalRedis:
    """A redis-server that keeps nothing on disk, on its own port."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Redis URL (database 0 of the soak's own server)."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", HOST,
             "--save", "", "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        _wait(lambda: port_open(self.port), 20, "redis-server")

    def stop(self) -> None:
        """SIGTERM (nothing is saved), wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self, down_s: float = 1.0) -> None:
        """Stop (every key, stream and queue is gone), stay down ``down_s``, start empty on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def cleanup(self) -> None:
        """Stop and delete the directory."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

"""Throw-away PostgreSQL and Redis servers for benchmarks (no pytest at run time).

The one procedure (``tests/servers.py`` wraps it and fails tests through ``pytest.fail``):
a free loopback port, a temp dir, PostgreSQL as the ``postgres`` user when root
(``initdb`` refuses root), ``redis-server`` in the foreground without persistence.
A missing binary ends the benchmark with a message naming the package to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "RedisServer", "free_port", "start_postgres", "start_redis"]

PG_PACKAGE = "postgresql-15"
#: Where Debian puts the server binaries (initdb and pg_ctl are not on PATH there).
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/17/bin")


class ServerMissing(SystemExit):
    """A server binary (or its user) is missing: what to install."""


def _fail(msg: str):
    raise ServerMissing(f"error: {msg}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        path = Path(d) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    _fail(
        f"PostgreSQL server binary {name!r} not found (looked in {', '.join(PG_BIN_DIRS)} "
        f"and PATH): install {PG_PACKAGE} (apt-get install -y {PG_PACKAGE})"
    )


@dataclass
class PostgresServer:
    """A running PostgreSQL; ``url(db)`` names a database on it, ``create_db`` makes one."""

    port: int
    data_dir: Path
    root: Path
    as_user: list[str]
    pg_ctl: str

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(
                psycopg.sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data_dir), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, durable: bool = False) -> PostgresServer:
    """initdb + pg_ctl start in a fresh temp dir on a free port (as ``postgres`` when
    root); fails the test, naming the package, when the binaries are missing.

    Tests run with ``fsync=off`` (a test server's data dies with it anyway);
    ``durable=True`` keeps PostgreSQL's defaults, for measurements."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _fail(f"running as root and there is no 'postgres' user: install "
                        f"{PG_PACKAGE} (it creates the user)")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    run = subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
         "--locale=C", "--no-sync"],
        capture_output=True, text=True, timeout=120,
    )
    if run.returncode:
        shutil.rmtree(root, ignore_errors=True)
        _fail(f"initdb failed:\n{run.stdout}\n{run.stderr}")
    last = ""
    for _attempt in range(5):  # a free port can be taken between probe and bind
        port = free_port()
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run = subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "server.log"),
             "-w", "-t", "60", "start"],
            capture_output=True, text=True, timeout=90,
        )
        if run.returncode == 0:
            server = PostgresServer(port, data, root, as_user, pg_ctl)
            _wait_ready(server)
            return server
        log = root / "server.log"
        last = f"{run.stdout}\n{run.stderr}\n{log.read_text() if log.exists() else ''}"
    shutil.rmtree(root, ignore_errors=True)
    _fail(f"PostgreSQL did not start:\n{last}")


def _wait_ready(server: PostgresServer, timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------------- Redis
REDIS_PACKAGE = "redis-server"


@dataclass
class RedisServer:
    """A running ``redis-server`` (its own process); ``url(n)`` names database n."""

    port: int
    root: Path
    binary: str
    proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.root / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{text}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: what an outage looks like to clients (the data dies with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def start_redis() -> RedisServer:
    """``redis-server`` on a free loopback port in a temp dir; fails the test with
    "install redis-server" when the binary is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        _fail(
            f"redis-server not found on PATH: install {REDIS_PACKAGE} "
            f"(apt-get install -y {REDIS_PACKAGE})",
        )
    root = Path(tempfile.mkdtemp(prefix="redis-test-"))
    last: Exception | None = None
    for _attempt in range(5):  # a free port can be taken between probe and bind
        try:
            return RedisServer(free_port(), root, binary).start()
        except RuntimeError as exc:
            last = exc
    shutil.rmtree(root, ignore_errors=True)
    _fail(f"redis-server did not start: {last}")

"""A real redis-server for tests: started on a free loopback port in a temporary directory, stopped
after. Skips the test when redis-server is not installed (scripts/install-system-deps.sh adds it).

    with RedisServer(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """redis-server with append-only persistence (appendfsync always), in `directory`.

    appendonly=False runs it as a plain `redis-server` would keep data (snapshots only);
    password sets requirepass. `restart(wipe=True)` brings it back on the same port with no data.
    """

    def __init__(self, directory: Path, appendonly: bool = True, password: str = ""):
        self.directory = directory
        self.appendonly = appendonly
        self.password = password
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password or None, socket_connect_timeout=2)

    def restart(self, wipe: bool = False) -> RedisServer:
        """Stops the server and starts it again on the same port; wipe=True deletes its data first."""
        self.stop()
        if wipe:
            shutil.rmtree(self.directory)
        return self.start(port=self.port)

    def start(self, port: int = 0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (scripts/install-system-deps.sh)")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.port = port or _free_port()
            persistence = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            if not self.appendonly:
                persistence = ["--appendonly", "no", "--save", "3600 1 300 100 60 10000"]
            auth = ["--requirepass", self.password] if self.password else []
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    *persistence,
                    *auth,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    redis.Redis(
                        port=self.port, password=self.password or None, socket_connect_timeout=0.2
                    ).ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

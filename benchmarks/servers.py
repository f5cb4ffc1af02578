"""Start and stop the servers under test as subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def refunddesk_env(database_url: str, synchronous: str = "FULL") -> dict[str, str]:
    """The environment for a refunddesk process on its own database; everything else shipped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDDESK_")}
    env["REFUNDDESK_DATABASE_URL"] = database_url
    env["REFUNDDESK_SQLITE_SYNCHRONOUS"] = synchronous
    return env


def cli(args: list[str], env: dict[str, str]) -> str:
    """Run `refunddesk ARGS` and return its stdout."""
    done = subprocess.run(
        [str(BIN / "refunddesk"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"refunddesk {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Server:
    base: str
    pid: int  # with one process, the process serving requests


@contextmanager
def serving(cmd: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    """Run a server command until the block ends; yield it once /healthz answers."""
    base = f"http://{HOST}:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its workers too
        )
        try:
            _wait_ready(proc, base, log)
            yield Server(base, proc.pid)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def refunddesk_server(processes: int, port: int) -> list[str]:
    cmd = [str(BIN / "refunddesk"), "serve", "--no-workers-inline", "--port", str(port)]
    return [*cmd, "--processes", str(processes)]


def trivial_server(processes: int, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.trivial_app", "--port", str(port)]
    return [*cmd, "--processes", str(processes)]

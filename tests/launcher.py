"""`deploy/serve` (HAProxy in front of hosted replicas of the app) in the background, and the ports it takes.

Shared by tests/test_deploy.py and the class benchmark (bench/class_app.py).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from served import REPO, free_port

SERVE = REPO / "deploy" / "serve"
COOKIE = "wlm_replica"
REPLICA_LINE = re.compile(r"^replica (r\d+): pid (\d+), port (\d+)")
HAPROXY_LINE = re.compile(r"^haproxy: pid (\d+), port (\d+)")
READY = "the class can connect"


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (HAProxy's, then the replicas')."""
    for _ in range(200):
        first = free_port()
        if first + count < 65536 and all(port_is_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def nothing_listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Launched:
    """`deploy/serve` in the background; its printed lines (replicas' and HAProxy's pids and ports) read as they
    come. Use as a context manager: leaving it stops the launcher, and kills by id whatever it said it started
    should anything outlive it."""

    def __init__(self, replicas: int, logs: Path, env: dict | None = None):
        self.port = free_ports(replicas + 1)
        self.url = f"http://127.0.0.1:{self.port}"
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.lines: list[str] = []
        self.replicas: dict[str, tuple[int, int]] = {}  # name -> (pid, port)
        self.haproxy_pid: int | None = None
        self._changed = threading.Condition()
        self._stderr = open(logs / "launcher.err", "w")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVE), "--replicas", str(replicas), "--port", str(self.port), "--logs", str(logs)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if found := REPLICA_LINE.match(line):
                    self.replicas[found[1]] = (int(found[2]), int(found[3]))
                elif found := HAPROXY_LINE.match(line):
                    self.haproxy_pid = int(found[1])
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float) -> str:
        """The first printed line containing ``text``; RuntimeError (with the launcher's stderr) if it exits or
        ``timeout`` passes first."""
        def found():
            return next((line for line in self.lines if text in line), None)

        with self._changed:
            self._changed.wait_for(lambda: found() or self.process.poll() is not None, timeout)
            line = found()
        if line is None:
            raise RuntimeError(f"deploy/serve never printed {text!r} (status {self.process.poll()}):\n"
                               + "\n".join(self.lines) + "\n" + self.stderr())
        return line

    def stderr(self) -> str:
        self._stderr.flush()
        return (self.logs / "launcher.err").read_text(errors="replace")

    def pids(self) -> list[int]:
        return [pid for pid, _ in self.replicas.values()] + ([self.haproxy_pid] if self.haproxy_pid else [])

    def ports(self) -> list[int]:
        return [self.port] + [port for _, port in self.replicas.values()]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as an operator stops it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Launched:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        for pid in self.pids():  # only what the launcher itself said it started, should any outlive it
            if still_ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self._stderr.close()


def still_ours(pid: int) -> bool:
    """Whether ``pid`` is still a replica or HAProxy (and not a new process that got the same number)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"streamlit" in command or b"haproxy" in command


def replica_of(context) -> str | None:
    """The replica HAProxy keeps this browser context on: its `wlm_replica` cookie."""
    return next((c["value"] for c in context.cookies() if c["name"] == COOKIE), None)

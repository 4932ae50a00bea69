"""A real Tianluo deployment for API tests: workspace, two institutions, users of every role, uvicorn on a port.

Built once per test session through the same CLI commands an operator types (so the
set-up path is tested too) and served by uvicorn in a thread; tests talk HTTP to it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

PASSWORD = "correct horse battery"
ROLES = ("analyst", "senior", "admin", "auditor", "supervisor")


def tianluo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "tianluo.cli", *args], capture_output=True, text=True, input=stdin,
                       check=False, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"tianluo {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """A running server and what it was built with."""

    workspace: Path
    base: str
    datasets: dict[str, Path]
    server: Any = None
    thread: Any = None
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.Client(base_url=self.base + "/api/v1", headers=headers, timeout=120)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = httpx.post(self.base + "/api/v1/auth/login", json={"username": user, "password": PASSWORD}, timeout=60)
            r.raise_for_status()
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)


def build(root: Path) -> Deployment:
    """Simulate two small banks, detect, and set up a workspace with users of every role."""
    ws = root / "ws"
    datasets = {}
    tianluo("workspace", "init", str(ws), "--tenant", "BANK_A", "--name", "甲银行", "--ricd", "C1234567890123",
            "--goaml-rentity-id", "1234")
    tianluo("workspace", "add-tenant", str(ws), "BANK_B", "--name", "乙银行", "--ricd", "C9999999999999")
    for tenant, name, seed in (("BANK_A", "bank_a", 5), ("BANK_B", "bank_b", 6)):
        ds = root / name
        (ws / "vaults").mkdir(parents=True, exist_ok=True)
        # 40 days: the new-counterparty rules count first contacts only after 14 days of history.
        tianluo("simulate", "--out", str(root / f"src_{name}"), "--transactions", "8000", "--persons", "600",
                "--enterprises", "60", "--days", "40", "--seed", str(seed), "--illicit-ratio", "0.02",
                "--dataset", str(ds), "--vault", str(ws / "vaults" / f"{name}.sqlite"))
        tianluo("workspace", "add-dataset", str(ws), name, str(ds), "--tenant", tenant)
        tianluo("detect", str(ds), "--only", "rule,miner", "--workspace", str(ws))
        datasets[name] = ds
    for role in ROLES:
        tianluo("workspace", "add-user", str(ws), f"{role}_a", "--role", role, "--tenant", "BANK_A",
                "--password-stdin", stdin=PASSWORD + "\n")
    # guessed_a: the rate-limit test locks it out (the others must keep logging in).
    for user, role in (("senior2_a", "senior"), ("guessed_a", "analyst"), ("analyst_b", "analyst"),
                       ("senior_b", "senior")):
        tenant = "BANK_A" if user.endswith("_a") else "BANK_B"
        tianluo("workspace", "add-user", str(ws), user, "--role", role, "--tenant", tenant, "--password-stdin",
                stdin=PASSWORD + "\n")
    return Deployment(workspace=ws, base="", datasets=datasets)


def serve(dep: Deployment) -> Deployment:
    """Run the app with uvicorn in a thread on a free port (a real HTTP server)."""
    from tianluo.api import create_app

    app = create_app(dep.workspace, ui=False)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    dep.base, dep.server, dep.thread = f"http://127.0.0.1:{port}", server, thread
    with contextlib.suppress(Exception):
        httpx.get(dep.base + "/api/v1/health", timeout=10)
    return dep

"""docs/api.md's set-up block runs as written, and `tianluo serve` then answers on it.

The block's commands run in bash with `.venv/bin/` pointed at this interpreter's scripts
and `/tmp/` at a private folder; the last command (`tianluo serve`) is started as a real
process on a free port, and the documented users log in and see their queue.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workspace_block_runs_and_serves(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "docs/api.md lost its set-up block"
    bindir = str(Path(sys.executable).parent) + "/"
    # /tmp/ first: the venv itself may live under /tmp (a clone checked there).
    script = block.group(1).replace("/tmp/", f"{tmp_path}/").replace(".venv/bin/", bindir)
    lines = script.replace("\\\n", " ").splitlines()
    serve = [ln for ln in lines if "tianluo serve" in ln]
    assert len(serve) == 1 and lines[-1] == serve[0], "the block ends by serving the workspace"
    setup = "\n".join(lines[:-1])
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", setup], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "COLUMNS": "200"}, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "user bob (senior, BANK_A) created" in p.stdout and "case(s) opened" in p.stdout

    port = _free_port()
    cmd = [*serve[0].split("#")[0].split(), "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else "server exited"
            time.sleep(0.2)
        login = httpx.post(base + "/auth/login", json={"username": "alice", "password": "a long enough password"})
        assert login.status_code == 200, login.text
        h = {"Authorization": f"Bearer {login.json()['token']}"}
        queue = httpx.get(base + "/alerts", headers=h).json()
        assert queue["total"] > 0 and queue["items"][0]["dataset"] == "bank_a"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code in (200, 503)  # UI (503: not built)
    finally:
        server.terminate()
        server.wait(timeout=30)

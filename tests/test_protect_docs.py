"""The snippets of docs/security.md run as written, in order, and the shell one refuses to overwrite a key."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_python_snippets_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    blocks = _blocks("python")
    assert len(blocks) == 4
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # our own documentation, nothing user-written
    assert (tmp_path / "protect-demo" / "pii.sqlite.audit.jsonl").exists()


def test_key_file_command_creates_a_private_key_once(tmp_path: Path) -> None:
    (command,) = _blocks("sh")[:1]
    env = {**os.environ, "HOME": str(tmp_path)}
    root = DOC.parents[1]
    subprocess.run(["bash", "-ec", command], cwd=root, env=env, check=True)
    key = tmp_path / ".config" / "tianluo" / "master.key"
    assert len(bytes.fromhex(key.read_text().strip())) == 32 and key.stat().st_mode & 0o777 == 0o600
    before = key.read_text()
    assert subprocess.run(["bash", "-ec", command], cwd=root, env=env, capture_output=True).returncode != 0
    assert key.read_text() == before

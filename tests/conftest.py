"""Shared fixtures: the team's real data sets, a fixed tokenization key, fresh dataset folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


@pytest.fixture(autouse=True)
def _master_key(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test tokenizes with a fixed key and a private keyring, never the user's files."""
    monkeypatch.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
    monkeypatch.setenv("TIANLUO_KEYRING", str(tmp_path_factory.mktemp("keys") / "keyring.json"))


def shared(name: str) -> Path:
    """Path of a shared data set; skip the test with a clear message if it is absent."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"shared data set {p} is not present on this machine")
    return p


@pytest.fixture(scope="session")
def api_deployment(tmp_path_factory: pytest.TempPathFactory):
    """Two simulated institutions behind a real uvicorn server (built once; the API tests share it)."""
    from tests.api_server import build, serve

    keys = tmp_path_factory.mktemp("api-keys")
    with pytest.MonkeyPatch.context() as mp:
        # Session-wide key for the subprocess CLI calls and the server (the autouse fixture is per test).
        mp.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
        mp.setenv("TIANLUO_KEYRING", str(keys / "keyring.json"))
        dep = serve(build(tmp_path_factory.mktemp("api")))
        yield dep
        dep.stop()

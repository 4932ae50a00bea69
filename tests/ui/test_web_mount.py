"""`tianluo.web.mount`: the built UI at `/`, the SPA fallback, and `/api` left to the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import tianluo.web as web


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Tianluo</title><div id=app></div>", encoding="utf-8")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)", encoding="utf-8")
    (dist / "favicon.svg").write_text("<svg/>", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("do not serve", encoding="utf-8")
    monkeypatch.setattr(web, "DIST", dist)

    app = FastAPI()
    web.mount(app)  # mounted before the API routes on purpose: order must not matter

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    web.mount(app)  # idempotent
    return TestClient(app)


def test_index_and_assets_are_served_with_cache_rules(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "<div id=app>" in r.text
    assert r.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    a = client.get("/assets/index-abc123.js")
    assert a.status_code == 200 and a.text == "console.log(1)"
    assert "immutable" in a.headers["cache-control"]
    assert client.get("/favicon.svg").text == "<svg/>"


def test_app_routes_fall_back_to_index_but_api_and_missing_assets_do_not(client: TestClient) -> None:
    for path in ("/alerts", "/cases/C-1?tab=report", "/trace?account=A1"):
        r = client.get(path)
        assert r.status_code == 200 and "<div id=app>" in r.text, path
    assert client.get("/api/v1/ping").json() == {"ok": True}
    assert client.get("/api/v1/nothing-here").status_code == 404
    assert "<div id=app>" not in client.get("/api/v1/nothing-here").text
    assert client.get("/assets/missing.js").status_code == 404
    assert client.post("/alerts").status_code == 405


def test_no_file_outside_the_bundle_is_served(client: TestClient) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
        r = client.get(path)
        assert "do not serve" not in r.text, path


def test_a_missing_build_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "DIST", tmp_path / "nothing")
    app = FastAPI()
    web.mount(app)
    r = TestClient(app).get("/alerts")
    assert r.status_code == 503 and "scripts/build-web.sh" in r.text

"""Browser tests of the investigator UI: a real deployment served by `tianluo serve`, driven by
Debian's chromium through Playwright (never a downloaded browser).

The session builds, once: chromium and CJK fonts (scripts/deps/chromium.sh), the UI bundle
(scripts/build-web.sh, quick when up to date), a simulated bank with detection run, a workspace
with an analyst (li.na) and two seniors (wang.wei, zhao.min), and the server on a free port.
Screenshots go to tests/ui/artifacts/ (git-ignored; TIANLUO_UI_ARTIFACTS=DIR puts them elsewhere);
with TIANLUO_UPDATE_SCREENSHOTS=1 the main ones are also copied into docs/img/ as ui-<name>.png.

Without chromium (or Playwright, or Node.js to build the bundle) the browser tests are skipped
with the reason, except under CI (CI=true), where that is a failure: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TIANLUO_UI_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
DOC_SHOTS = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
PASSWORD = "tianluo-ui-test-2026"
USERS = {"li.na": ("analyst", "李娜"), "wang.wei": ("senior", "王伟"), "zhao.min": ("senior", "赵敏"),
         "chen.jie": ("supervisor", "陈杰")}
VIEWPORT = {"width": 1366, "height": 768}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ui: browser tests of the web UI (headless chromium; select with -m ui)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.ui)


def _run(cmd: list[str], env: dict[str, str], *, stdin: str | None = None, timeout: int = 900) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, input=stdin, env=env, timeout=timeout, check=False,
                       cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(what: str) -> None:
    """Skip locally, fail under CI: a CI run that silently skipped the browser tests proves nothing."""
    if _in_ci():
        pytest.fail(f"CI=true and the UI tests cannot run: {what}", pytrace=False)
    pytest.skip(f"UI tests skipped: {what}")


def _require_browser() -> None:
    """Debian's chromium and CJK fonts (installed by scripts/deps/chromium.sh when we may) and Playwright."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package playwright is not installed (pip install -e '.[dev]')")
    problem = ""
    try:
        _run(["sh", str(ROOT / "scripts" / "deps" / "chromium.sh")], dict(os.environ), timeout=1800)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        problem = f" (scripts/deps/chromium.sh could not install it: {str(e).strip()[-500:]})"
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} not found{problem}; install it with `sudo sh scripts/deps/chromium.sh` "
                 "(Debian's chromium and fonts-noto-cjk)")


def _require_bundle() -> None:
    """The UI bundle, built by scripts/build-web.sh (quick when up to date)."""
    if shutil.which("npm") is None and not (ROOT / "src" / "tianluo" / "web" / "dist" / "index.html").is_file():
        _missing("the web UI is not built and Node.js/npm are not installed to build it (scripts/build-web.sh)")
    _run(["bash", str(ROOT / "scripts" / "build-web.sh")], dict(os.environ), timeout=900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    workspace: Path
    dataset: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A populated workspace behind `tianluo serve` (a subprocess, as an operator runs it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _require_browser()
    _require_bundle()

    root = tmp_path_factory.mktemp("ui")
    env = {**os.environ, "TIANLUO_MASTER_KEY": TEST_KEY, "TIANLUO_KEYRING": str(root / "keyring.json"),
           "COLUMNS": "200"}
    cli = [sys.executable, "-m", "tianluo.cli"]
    ws, ds = root / "ws", root / "bank"
    _run([*cli, "workspace", "init", str(ws), "--tenant", "BANK_A", "--name", "甲银行", "--ricd", "C1234567890123"],
         env)
    (ws / "vaults").mkdir(parents=True, exist_ok=True)
    # 45 days: the new-counterparty rules count first contacts only after 14 days of history.
    _run([*cli, "simulate", "--out", str(root / "source"), "--transactions", "30000", "--persons", "2000",
          "--enterprises", "200", "--days", "45", "--seed", "3", "--dataset", str(ds),
          "--vault", str(ws / "vaults" / "bank.sqlite")], env)
    _run([*cli, "workspace", "add-dataset", str(ws), "bank", str(ds), "--tenant", "BANK_A", "--no-sync"], env)
    _run([*cli, "detect", str(ds), "--only", "rule,miner", "--workspace", str(ws)], env)
    # A second institution, so the supervisor's view has more than one row.
    _run([*cli, "workspace", "add-tenant", str(ws), "BANK_B", "--name", "乙银行", "--ricd", "C9999999999999"], env)
    _run([*cli, "simulate", "--out", str(root / "source_b"), "--transactions", "3000", "--persons", "300",
          "--enterprises", "30", "--days", "20", "--seed", "8", "--dataset", str(root / "bank_b")], env)
    _run([*cli, "workspace", "add-dataset", str(ws), "bank_b", str(root / "bank_b"), "--tenant", "BANK_B",
          "--no-sync"], env)
    _run([*cli, "detect", str(root / "bank_b"), "--only", "rule,miner", "--workspace", str(ws)], env)
    for user, (role, display) in USERS.items():
        _run([*cli, "workspace", "add-user", str(ws), user, "--role", role, "--tenant", "BANK_A",
              "--display-name", display, "--password-stdin"], env, stdin=PASSWORD + "\n")

    port = _free_port()
    log = ARTIFACTS / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*cli, "serve", "--workspace", str(ws), "--port", str(port)], env=env, cwd=ROOT,
                                stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/api/v1/health", proc, log)
        yield Server(base=base, workspace=ws, dataset="bank", process=proc, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tianluo serve exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"tianluo serve did not answer {url}:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def browser(ui_server: Server) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    # what the page shows is waited for, never timed: a slow machine only waits longer
    expect.set_options(timeout=20_000)

    # Playwright gives every launch a fresh, empty profile of its own (it refuses --user-data-dir).
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


class Session:
    """One user's browser context: log in, go to pages, take screenshots."""

    def __init__(self, browser: Any, server: Server, *, locale: str = "en-GB") -> None:
        self.server = server
        self.context = browser.new_context(viewport=VIEWPORT, locale=locale, accept_downloads=True,
                                           timezone_id="Asia/Shanghai")
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def goto(self, path: str) -> Any:
        self.page.goto(self.server.base + path)
        return self.page

    def login(self, user: str, password: str = PASSWORD, *, lands: str = "**/alerts**") -> Any:
        page = self.goto("/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lands)
        return page

    def shot(self, name: str, *, full_page: bool = False, doc: bool = False, top: bool = False) -> Path:
        """Save a screenshot (toasts hidden; `top`: scrolled to the top of the page first)."""
        path = ARTIFACTS / f"{name}.png"
        if top or full_page:
            self.page.evaluate("window.scrollTo(0, 0)")
        hide = self.page.add_style_tag(content=".toasts { visibility: hidden !important }")
        try:
            self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        finally:
            hide.evaluate("e => e.remove()")
        if doc and os.environ.get("TIANLUO_UPDATE_SCREENSHOTS"):
            DOC_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOC_SHOTS / f"ui-{name}.png")
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session_factory(browser: Any, ui_server: Server) -> Iterator[Any]:
    made: list[Session] = []

    def make(**kwargs: Any) -> Session:
        s = Session(browser, ui_server, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        errors = list(s.console_errors)
        s.close()
        assert not errors, f"uncaught errors in the page: {errors}"

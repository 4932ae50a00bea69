"""docs/reports.md: its Python example runs as written and its CLI section names the real commands."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT
from tianluo.report.cli import app

DOC = ROOT / "docs" / "reports.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_python_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    [code] = blocks("python")
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_reports"})
    out = capsys.readouterr().out
    assert "NBHC1234567890123-20250103-00000001.XML" in out
    assert "NBSC1234567890123-" in out and "goAML-CASE-1-" in out


def test_cli_section_uses_existing_commands_and_options() -> None:
    [sh] = blocks("sh")
    runner = CliRunner()
    for command in ("large-value", "suspicious", "goaml", "validate"):
        assert f"tianluo report {command} " in sh
        help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        used = set(re.findall(r"(--[a-z][a-z-]+)", sh.split(f"tianluo report {command} ")[1].split(".venv/")[0]))
        missing = {opt for opt in used if opt not in help_text}
        assert not missing, (command, missing)

"""What a plain server install needs: the server never imports the load tester's
extra packages (rich, matplotlib: pyproject.toml's `loadtest` extra), and the load
tester says plainly what to install when they are missing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from loadtest import cli

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_never_imports_the_load_testers_extras() -> None:
    offenders = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [(path.name, n) for n in names
                          if n.split(".")[0] in (*cli.EXTRA_MODULES, "loadtest")]
    assert not offenders


def test_the_load_tester_names_the_extra_it_misses(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.missing_extras() == []  # the test install has them
    monkeypatch.setattr(cli, "EXTRA_MODULES", ("rich", "no_such_module_here"))
    assert cli.main(["run", "flash_sale"]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_here not installed" in err and '.[loadtest]' in err
    # Listing the scenarios needs nothing more.
    assert cli.main(["list"]) == 0

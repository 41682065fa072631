"""The deployment files in docs/deploy/ (docs/deploy.md).

The systemd unit is linted by systemd itself: `systemd-analyze verify` loads it
as systemd would (it works offline, without a running systemd, as in this
container) and names every unknown section, key or bad value; `systemd-analyze
security --offline=yes` scores its sandboxing. The only change made to the copy
it checks is ExecStart's binary, pointed at this checkout's `livesell` (verify
refuses a command that does not exist). A parser of our own would only know the
keys we told it about; systemd knows its own.

The Containerfile is documented and built by nobody here: its instructions are
checked to be Containerfile instructions, and the files it copies to exist.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "docs" / "deploy" / "livesell.service"
CONTAINERFILE = ROOT / "docs" / "deploy" / "Containerfile"
# systemd-analyze's exposure score, 0 (locked down) .. 10 (unprotected), times ten.
MAX_EXPOSURE_X10 = 20


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package "
                    "(apt-get install systemd); .ci/run installs it")
    return found


def _unit_copy(tmp_path: Path) -> Path:
    livesell = Path(sys.executable).parent / "livesell"
    assert livesell.exists(), livesell
    text = UNIT.read_text()
    assert "ExecStart=/opt/livesell/bin/livesell serve" in text
    copy = tmp_path / "livesell.service"
    copy.write_text(text.replace("/opt/livesell/bin/livesell", str(livesell)))
    return copy


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    out = subprocess.run([_analyze(), "verify", str(_unit_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), out


def test_systemd_verify_does_catch_a_bad_key(tmp_path: Path) -> None:
    """The lint above is not vacuous: a key systemd does not know is named."""
    copy = _unit_copy(tmp_path)
    copy.write_text(copy.read_text().replace("Restart=on-failure",
                                             "Restart=on-failure\nRestartt=always"))
    out = subprocess.run([_analyze(), "verify", str(copy)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert "Unknown key 'Restartt'" in out.stderr or "Unknown key name 'Restartt'" \
        in out.stderr, out


def test_systemd_unit_is_sandboxed(tmp_path: Path) -> None:
    out = subprocess.run([_analyze(), "security", "--offline=yes",
                          f"--threshold={MAX_EXPOSURE_X10}", str(_unit_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_systemd_unit_restarts_on_failure_and_reads_its_environment_file() -> None:
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1]
             for line in UNIT.read_text().splitlines()
             if "=" in line and not line.startswith("#")}
    assert lines["Restart"] == "on-failure"
    assert lines["EnvironmentFile"] == "/etc/livesell/livesell.env"
    assert lines["KillSignal"] == "SIGTERM" and int(lines["TimeoutStopSec"]) >= 80
    assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"


INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL"}


def test_containerfile_uses_known_instructions_and_copies_what_exists() -> None:
    logical: list[str] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        pending += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    assert not pending, "a continued line at the end"
    words = [line.split()[0] for line in logical]
    assert set(words) <= INSTRUCTIONS, set(words) - INSTRUCTIONS
    assert words[0] == "FROM" and words[-1] == "CMD"
    for line in logical:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'CMD ["livesell", "serve"]' in logical

"""`scripts/setup` on a Python like Debian's own, whose venv lacks ensurepip until the
python3.X-venv package is installed: apt, python and id are stand-ins on PATH that log calls."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

DEBIAN_PYTHON = """#!/usr/bin/env bash
case "$1 $2" in
  "-m venv")
    mkdir -p "$3/bin"
    if [ ! -f "$STUB_STATE/venv-installed" ]; then
      echo "The virtual environment was not created successfully because ensurepip is not available." >&2
      exit 1
    fi
    cp "$STUB_STATE/venv-python" "$3/bin/python" ;;
  "-c import ensurepip") [ -f "$STUB_STATE/venv-installed" ] ;;
  "-c import sys"*) echo 3.11 ;;
  *) exit 2 ;;
esac
"""
VENV_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$STUB_STATE/pip.log"
while [ $# -gt 0 ]; do [ "$1" = --target ] && mkdir -p "$2/brevo_python"; shift; done
"""
APT_GET = """#!/usr/bin/env bash
echo "$*" >> "$STUB_STATE/apt.log"
case "$*" in *"install -y -qq python3.11-venv"*) touch "$STUB_STATE/venv-installed" ;; esac
"""
ID = '#!/usr/bin/env bash\necho "$STUB_UID"\n'


def _stub(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def _env(tmp_path: Path, uid: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": str(bin_dir / "python3"),
        "STUB_STATE": str(tmp_path / "state"),
        "STUB_UID": str(uid),
    }


def _setup(
    tmp_path: Path, *, uid: int, has_venv: bool
) -> tuple[subprocess.CompletedProcess[str], Path]:
    repo, bin_dir, state = tmp_path / "repo", tmp_path / "bin", tmp_path / "state"
    for folder in (repo / "scripts", bin_dir, state):
        folder.mkdir(parents=True)
    shutil.copy(SCRIPTS / "setup", repo / "scripts" / "setup")
    (repo / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    _stub(bin_dir / "python3", DEBIAN_PYTHON)
    _stub(state / "venv-python", VENV_PYTHON)
    _stub(bin_dir / "apt-get", APT_GET)
    _stub(bin_dir / "id", ID)
    if has_venv:
        (state / "venv-installed").touch()
    result = subprocess.run(
        ["bash", "scripts/setup"],
        cwd=repo,
        env=_env(tmp_path, uid),
        capture_output=True,
        text=True,
        check=False,
    )
    return result, state


def _log(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_as_root_it_installs_the_venv_package_and_retries(tmp_path: Path) -> None:
    result, state = _setup(tmp_path, uid=0, has_venv=False)
    assert result.returncode == 0, result.stderr
    assert "installing python3.11-venv with apt" in result.stdout
    assert _log(state / "apt.log") == ["update -qq", "install -y -qq python3.11-venv"]
    assert (tmp_path / "repo" / ".venv" / "bin" / "python").exists()
    assert "-m pip install --quiet -e .[test]" in _log(state / "pip.log")


def test_without_root_it_says_what_to_install(tmp_path: Path) -> None:
    result, state = _setup(tmp_path, uid=1000, has_venv=False)
    assert result.returncode == 1
    assert "its ensurepip module is missing" in result.stderr
    assert "sudo apt-get install python3.11-venv" in result.stderr
    assert _log(state / "apt.log") == []
    # No half-made .venv is left for the next run to mistake for a good one
    assert not (tmp_path / "repo" / ".venv").exists()


@pytest.mark.parametrize("uid", [0, 1000])
def test_a_python_with_venv_needs_no_apt(tmp_path: Path, uid: int) -> None:
    result, state = _setup(tmp_path, uid=uid, has_venv=True)
    assert result.returncode == 0, result.stderr
    assert _log(state / "apt.log") == []
    assert _log(state / "pip.log")[1:] == [
        "-m pip install --quiet -e .[test]",
        "-m pip install --quiet --target .venv/brevo1.partial brevo-python==1.2.0",
    ]
    assert (tmp_path / "repo" / ".venv" / "brevo1" / "brevo_python").is_dir()
    # Run again: everything is in place, nothing is installed twice
    again = subprocess.run(
        ["bash", "scripts/setup"],
        cwd=tmp_path / "repo",
        env=_env(tmp_path, uid),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert len(_log(state / "pip.log")) == 3

"""The Makefile's choice of interpreter for .venv (README: the distribution's /usr/bin/python3.11 where it
can make a venv, else python3 on the PATH), checked with ``make -n`` in a copy of its inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _venv_command(tmp_path: Path, distro_python: str) -> str:
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "setup.cfg"):
        shutil.copy(ROOT / name, tmp_path / name)
    # As a top-level make: not the sub-make of `make test` (its flags, PYTHON, "Entering directory")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON")}
    out = subprocess.run(["make", "-n", "--no-print-directory", f"DISTRO_PYTHON={distro_python}",
                          ".venv/.installed"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    return next(line for line in out.splitlines() if " -m venv " in line)


def test_a_distribution_python_that_can_make_a_venv_is_used(tmp_path: Path) -> None:
    assert _venv_command(tmp_path, sys.executable) == f"{sys.executable} -m venv .venv"


def test_without_a_usable_distribution_python_the_paths_python3_is_used(tmp_path: Path) -> None:
    assert _venv_command(tmp_path, str(tmp_path / "no-such-python")) == "python3 -m venv .venv"
    # one that runs but cannot make a venv (Debian's python3.11 without python3.11-venv)
    stub = tmp_path / "python-without-ensurepip"
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    assert _venv_command(tmp_path, str(stub)) == "python3 -m venv .venv"

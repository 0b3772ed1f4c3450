"""Hostile programs (tests/hostile_programs.py) against the code sandbox: forged passes, escapes and availability
attacks, as the user running the tests (root in CI) and as an unprivileged user, with the interpreter in a virtualenv
under /tmp and outside it. Every one must score 0.0 or be refused, leave nothing running and write nothing on the
host."""

import os
import shutil
import subprocess
import sys

import pytest

import score_trl.sandbox as sandbox


sys.path.insert(0, os.path.dirname(__file__))
import hostile_programs  # noqa: E402


pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")
UNPRIVILEGED = 65534


@pytest.mark.parametrize("interpreter", ["running", "venv_under_tmp"])
def test_hostile_programs_as_the_current_user(request, interpreter):
    python = request.getfixturevalue("venv_under_tmp") if interpreter == "venv_under_tmp" else None
    assert hostile_programs.failures(sandbox, python) == []


@pytest.fixture(scope="module")
def unprivileged_copy(tmp_path_factory):
    """The sandbox package and the hostile programs where an unprivileged user can read them, and a virtualenv under
    /tmp made from the system's interpreter (the one running the tests may live where that user cannot go)."""
    if os.geteuid() != 0:
        pytest.skip("runs as root and switches to an unprivileged user; as a plain user the test above covers it")
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None or shutil.which("setpriv") is None:
        pytest.skip("needs /usr/bin/python3 and setpriv")
    root = str(tmp_path_factory.mktemp("unprivileged"))
    shutil.copytree(os.path.dirname(sandbox.__file__), os.path.join(root, "sandbox"))
    shutil.copy(hostile_programs.__file__, root)
    venv = os.path.join(root, "venv")
    made = subprocess.run([system_python, "-m", "venv", "--without-pip", venv], capture_output=True)
    subprocess.run(["chmod", "-R", "a+rX", root], check=True)
    directory = root
    while directory != "/":  # pytest's temporary directories are private to their owner
        os.chmod(directory, os.stat(directory).st_mode | 0o005)
        directory = os.path.dirname(directory)
        if directory in ("/tmp", tmp_path_factory.getbasetemp().parent.parent):
            break
    return root, system_python, os.path.join(venv, "bin", "python") if made.returncode == 0 else None


@pytest.mark.parametrize("interpreter", ["system", "venv_under_tmp"])
def test_hostile_programs_as_an_unprivileged_user(unprivileged_copy, interpreter):
    root, system_python, venv_python = unprivileged_copy
    python = system_python if interpreter == "system" else venv_python
    if python is None:
        pytest.skip("the system's python3 cannot make a virtualenv here (Debian: apt-get install python3-venv)")
    command = [
        "setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups",
        python, "-I", os.path.join(root, "hostile_programs.py"), os.path.join(root, "sandbox"),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=root, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert report == {"uid": UNPRIVILEGED, "failures": []}

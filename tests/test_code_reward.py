import os
import shutil
import sys
import time

import pytest

from score_trl.rewards import code_reward, extract_code, verify_code, verify_code_batch
from score_trl.sandbox import SandboxConfig, run_python


HAS_BWRAP = shutil.which("bwrap") is not None
MBPP_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
HUMANEVAL = {"test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}
GOOD = "def add(a, b):\n    return a + b\n"
FAST = SandboxConfig(wall_time=3.0, cpu_time=3)
sys.path.insert(0, os.path.dirname(__file__))
import hostile_programs  # noqa: E402


@pytest.fixture(autouse=True, params=["running", pytest.param("venv_under_tmp", marks=pytest.mark.slow)])
def interpreter(request, monkeypatch):
    """Every test runs with the interpreter running pytest and (slow) as if training ran from a virtualenv under
    /tmp, as CI and tox make them: the sandbox's default interpreter is `sys.executable`."""
    if request.param == "venv_under_tmp":
        monkeypatch.setattr(sys, "executable", request.getfixturevalue("venv_under_tmp"))


def _live_sandbox_processes() -> list[str]:
    return hostile_programs.live_sandbox_processes()


def test_extract_code():
    assert extract_code("Here:\n```python\nx = 1\n```\nand\n```python\nx = 2\n```") == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("```python\nz = 4\n") == "z = 4\n"  # unclosed fence runs to the end
    assert extract_code("w = 5") == "w = 5"


def test_mbpp_pass_and_fail():
    assert verify_code(f"```python\n{GOOD}```", MBPP_TESTS) == 1.0
    assert verify_code("def add(a, b):\n    return a - b\n", MBPP_TESTS) == 0.0


def test_mbpp_setup_code_runs_first():
    setup = "OFFSET = 10\n"
    assert verify_code("def add(a, b):\n    return a + b + OFFSET - 10\n", MBPP_TESTS, setup) == 1.0
    assert verify_code("def add(a, b):\n    return a + b + OFFSET\n", MBPP_TESTS, setup) == 0.0


def test_mbpp_tests_as_json_string():
    assert verify_code(GOOD, '["assert add(1, 2) == 3"]') == 1.0


def test_humaneval_pass_and_fail():
    assert verify_code("def double(x):\n    return 2 * x\n", **HUMANEVAL) == 1.0
    assert verify_code("def double(x):\n    return x + x\n", test=HUMANEVAL["test"], entry_point="double") == 1.0
    assert verify_code("def double(x):\n    return 3 * x\n", **HUMANEVAL) == 0.0


@pytest.mark.parametrize(
    "trick",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0\n",
        "raise SystemExit(0)\n",
        # reading its own harness does not reveal the pass token
        "import sys\nprint(open(sys.argv[0]).read())\nprint(sys.stdin.read())\n",
        # rebinding print or os.write does not forge the report
        "import os, builtins\nos.write = lambda fd, b: 0\nbuiltins.print = lambda *a, **k: None\n"
        "def add(a, b):\n    return 0\n",
    ],
)
def test_early_exit_and_forgery_score_zero(trick):
    assert verify_code(trick, MBPP_TESTS, config=FAST) == 0.0


@pytest.mark.parametrize("name", sorted(hostile_programs.ITERATION_TESTS))
def test_stop_iteration_does_not_end_a_test_early(name):
    # map(), filter(), zip() and next(it, default) would read it as the end of their iteration, and pass the test
    tests = [hostile_programs.ITERATION_TESTS[name]]
    assert verify_code(hostile_programs.STOP_ITERATION, tests, config=FAST) == 0.0
    assert verify_code(GOOD, tests, config=FAST) == 1.0


def test_syntax_error_scores_zero():
    assert verify_code("def add(a, b) return a + b", MBPP_TESTS) == 0.0


def test_infinite_loop_is_killed_at_wall_time():
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", SandboxConfig(wall_time=1.0, cpu_time=10))
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - start < 5
    assert verify_code(GOOD + "while True:\n    pass\n", MBPP_TESTS, config=SandboxConfig(wall_time=1.0)) == 0.0


def test_cpu_time_limit():
    result = run_python("while True:\n    pass\n", SandboxConfig(wall_time=10.0, cpu_time=1))
    assert not result.timed_out and result.returncode != 0  # SIGXCPU/SIGKILL from RLIMIT_CPU, before the wall time


def test_memory_bomb():
    result = run_python("x = bytearray(8 * 1024**3)\nprint('allocated')\n", SandboxConfig(memory_mb=512))
    assert result.returncode != 0 and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


def test_output_flood_is_capped():
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 1_000_000)\n"  # 100 MB would take 0.1 s
    result = run_python(flood, SandboxConfig(max_output_bytes=10_000, wall_time=5.0))
    assert len(result.stdout) <= 10_000 and result.returncode != 0
    assert verify_code(GOOD + flood, MBPP_TESTS, config=SandboxConfig(max_output_bytes=10_000)) == 0.0


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    result = run_python("import os\nprint(sorted(os.environ))\n")
    assert "SECRET_TOKEN" not in result.stdout and "HF_" not in result.stdout


def test_working_directory_is_private():
    result = run_python("import os\nopen('out.txt', 'w').write('hi')\nprint(os.getcwd(), sorted(os.listdir('.')))\n")
    assert result.returncode == 0 and result.stdout.startswith("/tmp [") and "'out.txt'" in result.stdout
    # a fresh one on every run (an interpreter installed under /tmp is bound back into it, read-only)
    assert "out.txt" not in run_python("import os\nprint(os.listdir('.'))\n").stdout


@pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap (apt-get install bubblewrap): rlimits mode can write")
def test_writing_outside_the_working_directory_fails_under_bwrap():
    # Outside /tmp, which the sandbox replaces with a private tmpfs anyway.
    target = f"/var/tmp/score_trl_escape_{os.getpid()}.txt"
    result = run_python(f"open({target!r}, 'w').write('pwned')\n", SandboxConfig(isolation="bwrap"))
    # /var/tmp is not even in the sandbox's view; what it can see of the host is read-only
    assert result.returncode != 0 and ("Read-only file system" in result.stderr or "No such file" in result.stderr)
    assert not os.path.exists(target)


@pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap (apt-get install bubblewrap)")
def test_no_network_under_bwrap():
    probe = "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', 22))\n"
    result = run_python(probe, SandboxConfig(isolation="bwrap"))
    assert result.returncode != 0 and ("Network is unreachable" in result.stderr or "refused" in result.stderr)


# A bounded storm: a binary fork tree of depth 9 (at most 512 processes even if the sandbox regressed), every
# process then sleeping far past the wall time. The sandbox must kill the whole tree, setsid() escapees included.
FORK_BOMB = """\
import os, time
for _ in range(9):
    try:
        if os.fork() == 0:
            os.setsid()
    except OSError:
        pass
time.sleep(60)
"""


@pytest.mark.parametrize("isolation", ["bwrap", "rlimits"])
def test_fork_bomb_is_contained(isolation):
    if isolation == "bwrap" and not HAS_BWRAP:
        pytest.skip("needs bubblewrap")
    if isolation == "rlimits" and os.geteuid() == 0 and not _pids_cgroup_available():
        pytest.skip("as root without a pids cgroup, only bwrap's pid namespace catches setsid() escapees")
    start = time.monotonic()
    result = run_python(FORK_BOMB, SandboxConfig(wall_time=2.0, max_processes=16, isolation=isolation))
    assert result.timed_out
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 5
    while _live_sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_sandbox_processes() == []


def _pids_cgroup_available() -> bool:
    from score_trl.sandbox.limits import make_cgroup

    cgroup = make_cgroup(64, 4)
    if cgroup is None:
        return False
    cgroup.remove()
    return True


@pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap: RLIMIT_NPROC is set inside its user namespace")
def test_process_count_is_bounded():
    counter = """\
import os, time
n = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    n += 1
print(n)
"""
    result = run_python(counter, SandboxConfig(max_processes=8, wall_time=5.0))
    assert 0 < int(result.stdout.strip()) < 8


def test_batch_runs_in_parallel_and_keeps_order():
    slow_good = "import time\ntime.sleep(1)\n" + GOOD
    slow_bad = "import time\ntime.sleep(1)\ndef add(a, b):\n    return 0\n"
    completions = [slow_good, slow_bad] * 4  # 8 programs of 1 s: 8 s in sequence, about 2 s on 4 workers
    tests = [{"test_list": MBPP_TESTS}] * 8
    start = time.monotonic()
    scores = verify_code_batch(completions, tests, config=SandboxConfig(wall_time=5.0), max_workers=4)
    assert scores == [1.0, 0.0] * 4
    assert time.monotonic() - start < 6


def test_code_reward_trl_shape():
    chat = [[{"role": "assistant", "content": f"```python\n{GOOD}```"}], [{"role": "assistant", "content": "pass"}]]
    assert code_reward(prompts=[[], []], completions=chat, test_list=[MBPP_TESTS] * 2) == [1.0, 0.0]
    humaneval = code_reward(
        prompts=["", ""],
        completions=["def double(x):\n    return x * 2\n", "def double(x):\n    return x\n"],
        test=[HUMANEVAL["test"]] * 2,
        entry_point=["double"] * 2,
    )
    assert humaneval == [1.0, 0.0]


def test_missing_test_columns_name_both_formats():
    with pytest.raises(ValueError, match="test_list.*test_setup_code.*entry_point"):
        code_reward(prompts=[""], completions=[GOOD], answer=["3"])


def test_code_loaders_feed_code_reward():
    from datasets import Dataset

    from score_trl.data.code import humaneval_rows, mbpp_rows

    mbpp = mbpp_rows(
        Dataset.from_list(
            [
                {
                    "task_id": 2,
                    "text": "Write a function to add two numbers.",
                    "code": GOOD,
                    "test_list": MBPP_TESTS,
                    "test_setup_code": "",
                }
            ]
        )
    )
    row = mbpp[0]
    assert "assert add(1, 2) == 3" in row["prompt"][0]["content"] and row["id"] == "2"
    assert code_reward([row["prompt"]], [row["code"]], test_list=[row["test_list"]], test_setup_code=[""]) == [1.0]

    humaneval = humaneval_rows(
        Dataset.from_list(
            [
                {
                    "task_id": "HumanEval/0",
                    "prompt": "def double(x):\n",
                    "canonical_solution": "    return 2 * x\n",
                    "test": HUMANEVAL["test"],
                    "entry_point": "double",
                }
            ]
        )
    )
    row = humaneval[0]
    assert "def double(x):" in row["prompt"][0]["content"]
    solution = "```python\ndef double(x):\n" + row["canonical_solution"] + "```"
    assert code_reward([row["prompt"]], [solution], test=[row["test"]], entry_point=[row["entry_point"]]) == [1.0]


def test_an_interpreter_too_slow_to_start_is_not_scored_but_a_broken_sandbox_raises(monkeypatch):
    from score_trl.rewards import code as code_module
    from score_trl.rewards import verify_code
    from score_trl.sandbox import SandboxError

    tests = ["assert f() == 1"]
    # 1 ms of wall time: the interpreter cannot even start, which a loaded machine can cause: "cannot judge"
    assert verify_code("def f():\n    return 1\n", tests, config=SandboxConfig(wall_time=0.001)) is None

    def broken(*args, **kwargs):
        raise SandboxError("bwrap: cannot create a namespace")

    monkeypatch.setattr(code_module, "run_tests", broken)
    with pytest.raises(SandboxError, match="namespace"):
        verify_code("def f():\n    return 1\n", tests)


def test_only_builtin_values_cross_and_what_cannot_is_not_scored():
    # A test's own lambda cannot be sent to the program: "cannot judge", never 0.0 or 1.0.
    assert verify_code("def apply(f, x):\n    return f(x)\n", ["assert apply(lambda v: v + 1, 1) == 2"]) is None
    # Exceptions come back as the builtin of the same name, so a test that expects one still works.
    expects_error = "try:\n    div(1, 0)\n    raise AssertionError('no error')\nexcept ZeroDivisionError:\n    pass"
    assert verify_code("def div(a, b):\n    return a / b\n", [expects_error]) == 1.0
    assert verify_code("def div(a, b):\n    return 0\n", [expects_error]) == 0.0
    # A module the tests use without importing it (the solution did) is the judge's own import of it.
    area = "import math\ndef area(r):\n    return math.pi * r * r\n"
    assert verify_code(area, ["assert math.isclose(area(1), math.pi)"]) == 1.0
    # Every builtin type, nan and infinities too, round-trips.
    value = "(1, [2.5, float('inf')], {'a': {3, 4}}, frozenset({b'x'}), 1j, None, True, 'é')"
    assert verify_code(f"def f():\n    return {value}\n", [f"assert f() == {value}"]) == 1.0
    assert verify_code("def f():\n    return float('nan')\n", ["import math\nassert math.isnan(f())"]) == 1.0


def test_a_trainer_holding_descriptors_past_1024_can_still_score(descriptors_past_1024):
    assert verify_code(GOOD, MBPP_TESTS) == 1.0

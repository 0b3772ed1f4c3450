"""What a program in the code sandbox can do to the host beyond its limits: its disk, and its CPUs' run queues."""

import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sandbox_speed import busy_cores  # benchmarks/, on pytest's pythonpath

import score_trl.sandbox as sandbox
from score_trl.sandbox import SandboxConfig, run_python, run_tests


sys.path.insert(0, os.path.dirname(__file__))
import hostile_programs as hostile  # noqa: E402


pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")
MBPP = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(20, 22) == 42"
# The attack, bounded: fallocate(FALLOC_FL_KEEP_SIZE) allocates blocks without growing the file, so the
# file-size limit never fires. On every descriptor the program holds, 64 MiB each, held while the tests run.
FALLOCATE = (
    "import ctypes, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "ALLOCATED = [fd for fd in range(64) if libc.fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(64 << 20)) == 0]\n"
    "time.sleep(1.5)\ndef add(a, b):\n    return a + b\n"
)


def _free_bytes(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_fallocate_on_its_descriptors_takes_no_host_disk():
    watched = tempfile.gettempdir()  # where the host's own temporary files go
    before, lowest, done = _free_bytes(watched), [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            lowest.append(_free_bytes(watched))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        verdict = run_tests(FALLOCATE, MBPP + "\nassert ALLOCATED == []", config=SandboxConfig(wall_time=10.0))
    finally:
        done.set()
        watcher.join()
    # 64 MiB on each of stdout and stderr, when they were files on the host's disk; others may write there too
    assert before - min(lowest) < 96 << 20, f"host free space fell {(before - min(lowest)) >> 20} MiB"
    assert verdict == (True, "")


def test_io_uring_and_other_kernel_surface_are_refused():
    # io_uring's operations run in kernel threads that seccomp never sees: the ring itself must not be set up
    result = run_python(hostile.PROBES["kernel surface"], SandboxConfig())
    assert result.stdout.strip() == hostile.KERNEL_SURFACE_REFUSED, result.stderr


def test_no_host_path_in_command_lines_mount_points_or_sys_path():
    result = run_python(hostile.HOST_PATHS, SandboxConfig())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("cmdline") for line in lines) and any(line.startswith("mountpoint") for line in lines)
    leaks = [line for line in lines for path in hostile.host_paths(sandbox) if path in line]
    assert leaks == []


def test_output_over_the_cap_ends_with_a_broken_pipe_not_a_block():
    # The host stops reading at max_output_bytes: the program's next write fails at once, it never waits.
    flood = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 100_000)\n    sys.stdout.flush()\n"
    start = time.monotonic()
    result = run_python(flood, SandboxConfig(max_output_bytes=50_000, wall_time=20.0))
    assert time.monotonic() - start < 10 and not result.timed_out
    assert len(result.stdout) == 50_000 and "BrokenPipeError" in result.stderr


def test_a_correct_program_is_not_timed_out_because_both_cores_are_busy(busy_machine):
    # 1 s of CPU under a 1.2 s wall limit: on a quiet machine it passes; with two other processes spinning on the two
    # cores it gets about 2/3 of one and needs about 1.5 s of wall time, all of it but 1 s waiting for a CPU (two in
    # all: with more, the wait would pass the doubled limit)
    slow = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass\n" + hostile.RIGHT
    config = SandboxConfig(wall_time=1.2, cpu_time=5)
    with busy_cores(max(2 - busy_machine, 0)):
        assert run_tests(slow, MBPP, config=config) == (True, "")
    # a program that never ends still does, by twice the wall limit whatever the load
    start = time.monotonic()
    with busy_cores(max(2 - busy_machine, 0)):
        assert run_tests("while True:\n    pass\n", MBPP, config=config) == (False, "timed out")
    assert time.monotonic() - start < 2 * config.wall_time + 2


def test_the_hostile_programs_verdicts_do_not_depend_on_a_quiet_machine(busy_machine):
    """The key cases of tests/hostile_programs.py, 4 at a time as the code reward runs them, with both cores held by
    other processes: the same verdicts as on a quiet machine, each within its (at most doubled) wall time."""
    config = SandboxConfig(wall_time=4.0, memory_mb=512, max_processes=4, tmpfs_mb=16)
    mbpp = "\n".join(hostile.MBPP)
    cases = [
        (hostile.RIGHT, mbpp, True),
        (hostile.WRONG, mbpp, False),
        (hostile.DESCRIPTORS, "assert bad_descriptors() == []", True),
    ]
    cases += [(program, mbpp, False) for program in hostile.FORGERIES.values()]
    cases += [(hostile.STOP_ITERATION, tests, False) for tests in hostile.ITERATION_TESTS.values()]
    attacks = ["fill /tmp", "children over the memory budget", "descriptors", "output flood"]

    def judged(case: tuple) -> tuple:
        program, tests, _ = case
        start = time.monotonic()
        return run_tests(program, tests, config=config)[0], time.monotonic() - start

    def attacked(name: str) -> tuple:
        start = time.monotonic()
        cfg = hostile.memory_config(config) if name.startswith("children") else config
        return run_python(hostile.ATTACKS[name], cfg).stdout, time.monotonic() - start

    with busy_cores(max(2 - busy_machine, 0)), ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(judged, cases))
        outputs = dict(zip(attacks, pool.map(attacked, attacks), strict=True))
    assert [verdict for verdict, _ in verdicts] == [expected for _, _, expected in cases]
    assert max(seconds for _, seconds in [*verdicts, *outputs.values()]) < 2 * config.wall_time + 5
    assert outputs["fill /tmp"][0].startswith("files") and "files 2048" not in outputs["fill /tmp"][0]
    assert outputs["children over the memory budget"][0].startswith("forked 4 alive")
    assert "alive 4" not in outputs["children over the memory budget"][0]
    assert int(outputs["descriptors"][0].split()[1]) < config.max_open_files
    assert len(outputs["output flood"][0]) <= config.max_output_bytes
    deadline = time.monotonic() + 10
    while hostile.live_sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hostile.live_sandbox_processes() == []

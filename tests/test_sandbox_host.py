"""What a program in the code sandbox can do to the host beyond its limits: its disk, and its CPUs' run queues."""

import os
import shutil
import tempfile
import threading
import time

import pytest

from score_trl.sandbox import SandboxConfig, run_python, run_tests


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


def test_output_over_the_cap_ends_with_a_broken_pipe_not_a_block():
    # The host stops reading at max_output_bytes: the program's next write fails at once, it never waits.
    flood = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 100_000)\n    sys.stdout.flush()\n"
    start = time.monotonic()
    result = run_python(flood, SandboxConfig(max_output_bytes=50_000, wall_time=20.0))
    assert time.monotonic() - start < 10 and not result.timed_out
    assert len(result.stdout) == 50_000 and "BrokenPipeError" in result.stderr

"""Wall-clock limits that a busy machine does not shorten.

A run's wall time is what the machine gives it, not only what it needs: with both cores held by other jobs, a correct
program waited for a CPU long enough to be killed at its wall time, and scored 0.0 where a quiet machine scored 1.0.
So the time its processes spent runnable but waiting for a CPU (the run-queue wait in `/proc/PID/task/TID/schedstat`)
is added back to the limit, up to the limit again: a run ends by `2 * wall_time` whatever the load, and a program that
only sleeps or blocks gets no more than `wall_time`. The wait is read only when the limit is reached, so a run that
ends in time costs nothing here. `exited` waits for a process against such a limit, waking at its exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterable


__all__ = ["Deadline", "descendants", "exited", "run_queue_wait"]

_GRAIN = 0.01  # seconds


def run_queue_wait(pids: Iterable[int]) -> float:
    """Seconds the threads of `pids` have spent waiting on a run queue since they started (0.0 where the kernel does
    not keep schedstats, or for a process already gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with (
                    contextlib.suppress(OSError, ValueError, IndexError),
                    open(f"/proc/{pid}/task/{tid}/schedstat") as f,
                ):
                    total += int(f.read().split()[1])  # nanoseconds: on a CPU, waiting for one, timeslices
    return total / 1e9


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, through `/proc/PID/task/TID/children` (empty where the kernel lacks it)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError, ValueError), open(f"/proc/{current}/task/{tid}/children") as f:
                    todo += [int(child) for child in f.read().split()]
    return found


class Deadline:
    """`seconds` of wall time from now, plus the run-queue wait of the processes `pids()` names, at most `seconds`
    more."""

    def __init__(self, seconds: float, pids: Callable[[], Iterable[int]]):
        self.seconds = seconds
        self._pids = pids
        self._start = time.monotonic()
        self._waited = 0.0  # only grows: a process that exited takes its wait with it
        self._settled = False

    def remaining(self) -> float:
        """Seconds left; 0.0 once the limit, with the wait added back, has passed."""
        left = self._start + self.seconds + self._waited - time.monotonic()
        if left <= 0 and not self._settled:
            waited = min(self.seconds, run_queue_wait(self._pids()))
            # each extension is the wait during the last one, a shrinking series: stop once it is a few ms
            self._settled = waited < self._waited + _GRAIN
            self._waited = max(self._waited, waited)
            left = self._start + self.seconds + self._waited - time.monotonic()
        return max(left, 0.0)

    def wait(self, until: Callable[[float], bool]) -> bool:
        """Call `until(timeout)` (True: done) with what is left until it is done (True) or time is up (False)."""
        while True:
            left = self.remaining()
            if left <= 0:
                return False
            if until(left):
                return True


def exited(proc: subprocess.Popen, timeout: float) -> bool:
    """Whether `proc` exits within `timeout` seconds. `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which
    added 15 ms to each run; a pidfd wakes at the exit itself (Linux >= 5.3)."""
    if proc.poll() is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return False
    finally:
        os.close(pidfd)
    proc.wait()
    return True

"""Bounds on a run as a whole: a memory and pids cgroup per run where one can be made, resource limits always.

Per-process limits alone do not bound a program: four children of 200 MiB each ran under a 512 MiB address-space
limit. So where the cgroup file system is writable (training as root, or a delegated cgroup v2 subtree), each run gets
its own cgroup capping the memory of all its processes together (its tmpfs pages are charged there too) and their
number. Elsewhere the address space per process is `memory_mb / max_processes`, and `max_processes` is enforced by
RLIMIT_NPROC from inside the sandbox's user namespace, where it counts only the sandbox's own processes (Linux >= 5.14
counts it per user namespace; set outside, it counted every thread of the user running training).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid


__all__ = ["RunCgroup", "limits_prefix", "make_cgroup"]

_V1_ROOT = "/sys/fs/cgroup"
_V2_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


class RunCgroup:
    """One run's cgroup directories (one per controller on cgroup v1, one in all on v2)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def join(self, pid: int) -> None:
        for path in self.paths:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self) -> list[int]:
        found = set()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError), open(os.path.join(path, "cgroup.procs")) as f:
                found |= {int(line) for line in f if line.strip()}
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, setsid() escapees included, until it is empty."""
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        self.kill()
        for path in self.paths:
            for _ in range(100):  # the kernel removes a cgroup only once its last process is reaped
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _write(path: str, value: str) -> None:
    # "r+" never creates: the file exists only if the kernel made the directory a cgroup with that controller.
    with open(path, "r+") as f:
        f.write(value)


def _v2_root() -> str | None:
    for root in _V2_ROOTS:
        try:
            with open(os.path.join(root, "cgroup.subtree_control")) as f:
                controllers = f.read().split()
        except OSError:
            continue
        if {"memory", "pids"} <= set(controllers):
            return root
    return None


def make_cgroup(memory_mb: int, max_processes: int) -> RunCgroup | None:
    """A fresh cgroup capping memory (no swap) and processes, or None where none is writable (the usual non-root
    case). `max_processes` counts the program's own: bwrap's two processes come on top."""
    max_processes += 2
    name = f"score_trl_{uuid.uuid4().hex[:12]}"
    limit = str(memory_mb * 1024 * 1024)
    made: list[str] = []
    try:
        v2 = _v2_root()
        if v2 is not None:
            path = os.path.join(v2, name)
            os.mkdir(path)
            made.append(path)
            _write(os.path.join(path, "memory.max"), limit)
            with contextlib.suppress(OSError):
                _write(os.path.join(path, "memory.swap.max"), "0")
            _write(os.path.join(path, "pids.max"), str(max_processes))
            return RunCgroup(made)
        memory, pids = os.path.join(_V1_ROOT, "memory", name), os.path.join(_V1_ROOT, "pids", name)
        os.mkdir(memory)
        made.append(memory)
        os.mkdir(pids)
        made.append(pids)
        _write(os.path.join(memory, "memory.limit_in_bytes"), limit)
        with contextlib.suppress(OSError):  # absent without swap accounting
            _write(os.path.join(memory, "memory.memsw.limit_in_bytes"), limit)
        _write(os.path.join(pids, "pids.max"), str(max_processes))
        return RunCgroup(made)
    except OSError:
        for path in reversed(made):
            shutil.rmtree(path, ignore_errors=True)
        return None


def limits_prefix(
    cpu_time: int, address_space: int, max_output_bytes: int, max_open_files: int, cgroup: RunCgroup | None
) -> list[str]:
    """A command prefix that joins the cgroup, sets the limits and execs the rest, so that the child needs no
    `preexec_fn`: with one, Python must fork() the whole training process (its page tables, gigabytes of them in a
    trainer) instead of vfork(), and each sandbox start cost 50 ms more in a process that had imported torch.
    RLIMIT_NPROC is not set here (see the module docstring): the bootstrap sets it inside the sandbox."""
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    limits = [
        prlimit, f"--as={address_space}", f"--cpu={cpu_time}:{cpu_time + 1}", f"--fsize={max_output_bytes}",
        f"--nofile={max_open_files}", "--core=0", "--",
    ]  # fmt: skip
    if cgroup is None:
        return limits
    procs = [os.path.join(path, "cgroup.procs") for path in cgroup.paths]
    # exit 125 before anything runs: the bootstrap never reports its start, so it is the sandbox's failure
    join = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", join, "sh", *procs, "--", *limits]

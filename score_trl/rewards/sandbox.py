"""The one place that runs model-written code: a Python program in a bounded, isolated child process.

Two modes, chosen per call (`SandboxConfig.isolation`):

- `"bwrap"` (Debian's `bubblewrap`, used when installed): read-only view of `/`, a private `/tmp`, `/dev` and
  `/proc`, no network, its own pid namespace (every process the program starts dies with it), its own working
  directory as the only writable place.
- `"rlimits"` (fallback, with one warning): resource limits and a process-group kill only. The program can read the
  file system, write wherever the user running training can, use the network, and escape the kill with `setsid()`.

In both modes: wall-clock and CPU time, address space (memory), file size (which also caps captured output) and,
where the kernel honours it, the process count are bounded; the environment is scrubbed. `RLIMIT_NPROC` does not bind
root, so as root the process count is bounded only where a writable `pids` cgroup exists (docs/rewards.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal


__all__ = ["SandboxConfig", "SandboxResult", "run_python"]

logger = logging.getLogger(__name__)
_warned_fallback = False
_PIDS_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")


@dataclass
class SandboxConfig:
    """Limits for one sandboxed run. Defaults suit MBPP/HumanEval-sized programs."""

    wall_time: float = field(default=5.0, metadata={"help": "Seconds of wall-clock time before the run is killed."})
    cpu_time: int = field(default=5, metadata={"help": "Seconds of CPU time per process (RLIMIT_CPU)."})
    memory_mb: int = field(default=4096, metadata={"help": "Address-space limit per process, in MiB (RLIMIT_AS)."})
    max_processes: int = field(
        default=32, metadata={"help": "Processes the program may run at once (pids cgroup, or RLIMIT_NPROC)."}
    )
    max_output_bytes: int = field(
        default=1 << 20, metadata={"help": "Cap on stdout and stderr each, and on any file written (RLIMIT_FSIZE)."}
    )
    isolation: Literal["auto", "bwrap", "rlimits"] = field(
        default="auto",
        metadata={"help": "'bwrap' (namespaces), 'rlimits' (limits only), or 'auto': bwrap when installed."},
    )


@dataclass
class SandboxResult:
    """What a sandboxed run did. `stdout`/`stderr` are cut at `max_output_bytes`."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    isolation: str


def _resolve_isolation(requested: str) -> str:
    global _warned_fallback
    if requested == "rlimits":
        return "rlimits"
    if shutil.which("bwrap"):
        return "bwrap"
    if requested == "bwrap":
        raise RuntimeError(
            "SandboxConfig.isolation='bwrap' but `bwrap` is not installed: `apt-get install bubblewrap`."
        )
    if not _warned_fallback:
        logger.warning(
            "bubblewrap (`bwrap`) is not installed: model code runs with resource limits only, and can read files, "
            "use the network and escape the process-group kill. Install it with `apt-get install bubblewrap`."
        )
        _warned_fallback = True
    return "rlimits"


def _make_pids_cgroup(limit: int) -> str | None:
    """A fresh pids cgroup capped at `limit` processes, or None where none is writable (the usual non-root case)."""
    for root in _PIDS_CGROUP_ROOTS:
        path = os.path.join(root, f"score_trl_{uuid.uuid4().hex[:12]}")
        try:
            os.mkdir(path)
        except OSError:
            continue
        try:
            # "r+" never creates: the file exists only if the kernel made `path` a pids cgroup.
            with open(os.path.join(path, "pids.max"), "r+") as f:
                f.write(str(limit))
            return path
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
    return None


def _kill_cgroup(path: str) -> None:
    """SIGKILL every process in the cgroup, setsid() escapees included, until it is empty."""
    for _ in range(100):
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(line) for line in f if line.strip()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _remove_cgroup(path: str) -> None:
    _kill_cgroup(path)
    for _ in range(50):  # the kernel removes a cgroup only once its last process is reaped
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.02)


def _preexec(config: SandboxConfig, cgroup: str | None):
    def apply_limits() -> None:
        if cgroup is not None:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        mem = config.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (config.cpu_time, config.cpu_time + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (config.max_output_bytes, config.max_output_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (config.max_processes, config.max_processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply_limits


def _read_capped(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def run_python(source: str, config: SandboxConfig | None = None, stdin: str = "") -> SandboxResult:
    """Run `source` as a Python program under `config`'s limits and return what it did."""
    config = config or SandboxConfig()
    isolation = _resolve_isolation(config.isolation)
    with tempfile.TemporaryDirectory(prefix="score_trl_sbx_") as workdir:
        program = os.path.join(workdir, "program.py")
        with open(program, "w") as f:
            f.write(source)
        out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
        # -I: ignore PYTHON* variables and the user's site directory; no -O, so `assert` stays on.
        command = [sys.executable, "-I", program]
        if isolation == "bwrap":
            command = [
                "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                "--bind", workdir, workdir, "--chdir", workdir,
                "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--die-with-parent", "--new-session", *command,
            ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        cgroup = _make_pids_cgroup(config.max_processes)
        timed_out = False
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_preexec(config, cgroup),
                )
                try:
                    proc.communicate(input=stdin.encode(), timeout=config.wall_time)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    # Whatever the program left behind in its group (or, under bwrap, its pid namespace) goes too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        finally:
            if cgroup is not None:
                _remove_cgroup(cgroup)
        return SandboxResult(
            returncode=None if timed_out else proc.returncode,
            stdout=_read_capped(out_path, config.max_output_bytes),
            stderr=_read_capped(err_path, config.max_output_bytes),
            timed_out=timed_out,
            isolation=isolation,
        )

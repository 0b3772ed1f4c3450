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

The interpreter (`SandboxConfig.python`, default `sys.executable`) runs wherever it is installed: under bwrap, the
parts of its installation that the private `/tmp` would hide (a virtualenv made under `/tmp`, as CI and tox do) are
bound back read-only. A failure of the sandbox itself (bwrap cannot set up its namespaces, the interpreter cannot
start, a cgroup cannot be joined) raises `SandboxError`: it is never returned as a result for the program, so never
scored as the model's failure. The interpreter proves it started by writing to a pipe before the program runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
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


__all__ = ["SandboxConfig", "SandboxError", "SandboxResult", "run_python"]

logger = logging.getLogger(__name__)
_warned_fallback = False
_PIDS_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
# Mount points bwrap replaces with its own, empty ones: whatever the interpreter needs below them is bound back.
_PRIVATE_MOUNTS = ("/tmp", "/dev", "/proc")
# Where the interpreter looks for its code, asked of the interpreter itself (it need not be the one running us).
_PATHS_PROBE = (
    "import json, sys; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, "
    "sys.base_exec_prefix, *sys.path]))"
)
# Runs first in the sandbox: report "started" on the pipe `fd`, close it, then run the program as `python program.py`
# would. Everything after the report is the program's doing; a run without it is a failure of the sandbox.
_BOOTSTRAP = (
    "import os, sys, runpy; os.write({fd}, b'1'); os.close({fd}); sys.argv[:] = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


class SandboxError(RuntimeError):
    """The sandbox itself failed: bwrap could not start, the interpreter could not run, a cgroup could not be joined.

    Not the program's fault, so it is raised rather than scored: a reward of 0.0 would train the model on noise.
    `transient` marks a failure that may pass on its own (the interpreter did not start within the wall time on a
    loaded machine), which the code reward scores as "cannot judge" instead of stopping training.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


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
    python: str | None = field(
        default=None,
        metadata={
            "help": "Interpreter that runs the program (default: `sys.executable`, the one running training). Its "
            "installation is bound read-only into the bwrap sandbox wherever it lives."
        },
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
    if _bwrap() is not None:
        return "bwrap"
    if requested == "bwrap":
        raise SandboxError(
            "SandboxConfig.isolation='bwrap' but `bwrap` is not installed: `apt-get install bubblewrap`."
        )
    if not _warned_fallback:
        logger.warning(
            "bubblewrap (`bwrap`) is not installed: model code runs with resource limits only, and can read files, "
            "use the network and escape the process-group kill. Install it with `apt-get install bubblewrap`."
        )
        _warned_fallback = True
    return "rlimits"


def _bwrap() -> str | None:
    # An absolute path: the child's scrubbed PATH (/usr/bin:/bin) would not find a bwrap in /usr/local/bin.
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=8)
def _interpreter_paths(python: str) -> tuple[str, ...]:
    """The interpreter's executable, prefixes and import path, as it reports them in isolated mode (`-I`)."""
    try:
        probe = subprocess.run(
            [python, "-I", "-c", _PATHS_PROBE], capture_output=True, text=True, timeout=60, env={"LANG": "C.UTF-8"}
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise SandboxError(f"The sandbox interpreter {python!r} cannot be run: {error}") from error
    if probe.returncode != 0:
        raise SandboxError(
            f"The sandbox interpreter {python!r} exited with status {probe.returncode} before running any program: "
            f"{probe.stderr.strip()[-1000:]}"
        )
    return (python, *json.loads(probe.stdout))


def _resolve_python(python: str) -> str:
    # The program runs in its own working directory with PATH=/usr/bin:/bin: a bare name or relative path would not
    # resolve there as it does here.
    if os.sep not in python:
        python = shutil.which(python) or python
    return os.path.abspath(python)


def _is_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _interpreter_binds(python: str) -> list[str]:
    """`--ro-bind SRC DEST` arguments that make the interpreter's installation visible under bwrap's private mounts.

    Each path is bound at its real location and at the (possibly symlinked) location the interpreter knows it by;
    paths that bwrap leaves visible through its read-only `/` need nothing. A private mount point itself (an import
    path of exactly `/tmp`) is never bound: that would expose everything in it.
    """
    binds: dict[str, str] = {}
    for path in _interpreter_paths(python):
        if not path or not os.path.exists(path):  # sys.path lists zip archives and directories that may not exist
            continue
        real = os.path.realpath(path)
        for dest in {real, os.path.abspath(path)}:
            hidden = any(_is_below(dest, mount) for mount in _PRIVATE_MOUNTS)
            if hidden and dest not in _PRIVATE_MOUNTS and real not in _PRIVATE_MOUNTS:
                binds[dest] = real
    args, bound = [], []
    for dest in sorted(binds):  # parents first; a path inside one already bound needs no mount of its own
        if not any(_is_below(dest, parent) for parent in bound):
            args += ["--ro-bind", binds[dest], dest]
            bound.append(dest)
    return args


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
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(line) for line in f if line.strip()]
        except FileNotFoundError:  # gone already: nothing is left to kill
            return
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
        except FileNotFoundError:
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


def _started(read_fd: int) -> bool:
    """Whether the interpreter reported that it started, on the pipe whose read end is `read_fd` (closed here)."""
    os.set_blocking(read_fd, False)
    try:
        return os.read(read_fd, 1) == b"1"
    except BlockingIOError:  # nothing written, and the write end is still held by a process not yet reaped
        return False
    finally:
        os.close(read_fd)


def _failure_message(isolation: str, python: str, returncode: int | None, stderr: str, timed_out: bool) -> str:
    # bwrap reports its own failures (namespaces, mounts, execvp of the interpreter) as "bwrap: ..." lines.
    bwrap_failed = isolation == "bwrap" and any(line.startswith("bwrap:") for line in stderr.splitlines())
    who = "bubblewrap (`bwrap`)" if bwrap_failed else f"the interpreter {python!r} ({isolation} mode)"
    if timed_out:
        how = "did not start the program within the wall time (raise SandboxConfig.wall_time on a loaded machine)"
    else:
        how = f"exited with status {returncode} before running the program"
    message = f"The code sandbox failed, not the program: {who} {how}."
    detail = stderr.strip()[-1000:]
    if detail:
        message += f" Its error output: {detail}"
    if bwrap_failed:
        message += (
            " If bwrap cannot create namespaces here (some containers), allow unprivileged user namespaces or set "
            "SandboxConfig(isolation='rlimits') (limits only, no isolation: docs/rewards.md)."
        )
    elif not timed_out:
        message += " If it ran out of memory while starting, raise SandboxConfig.memory_mb."
    return message


def run_python(source: str, config: SandboxConfig | None = None, stdin: str = "") -> SandboxResult:
    """Run `source` as a Python program under `config`'s limits and return what it did.

    Raises `SandboxError` when the sandbox itself fails (the program never ran), so that the failure is not read as
    the program's.
    """
    config = config or SandboxConfig()
    isolation = _resolve_isolation(config.isolation)
    python = _resolve_python(config.python or sys.executable)
    with tempfile.TemporaryDirectory(prefix="score_trl_sbx_") as workdir:
        program = os.path.join(workdir, "program.py")
        with open(program, "w") as f:
            f.write(source)
        out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
        binds = _interpreter_binds(python) if isolation == "bwrap" else []
        read_fd, write_fd = os.pipe()
        # -I: ignore PYTHON* variables and the user's site directory; no -O, so `assert` stays on.
        command = [python, "-I", "-c", _BOOTSTRAP.format(fd=write_fd), program]
        if isolation == "bwrap":
            command = [
                _bwrap(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                *binds, "--bind", workdir, workdir, "--chdir", workdir,
                "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--die-with-parent", "--new-session", *command,
            ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        cgroup = _make_pids_cgroup(config.max_processes)
        timed_out = False
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                try:
                    proc = subprocess.Popen(
                        command,
                        cwd=workdir,
                        env=env,
                        stdin=subprocess.PIPE,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                        pass_fds=(write_fd,),
                        preexec_fn=_preexec(config, cgroup),
                    )
                except (OSError, subprocess.SubprocessError) as error:
                    os.close(read_fd)
                    if isinstance(error, OSError):  # the interpreter (rlimits) or bwrap cannot be executed
                        cause = f"{command[0]!r} cannot be executed: {error}"
                    else:  # raised in the child before exec: a limit or the pids cgroup could not be applied
                        cause = f"setting its resource limits or joining the pids cgroup {cgroup} failed: {error}"
                    raise SandboxError(f"The code sandbox could not start ({isolation} mode): {cause}") from error
                finally:
                    os.close(write_fd)
                try:
                    proc.communicate(input=stdin.encode(), timeout=config.wall_time)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    # Whatever the program left behind in its group (or, under bwrap, its pid namespace) goes too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    started = _started(read_fd)
        finally:
            if cgroup is not None:
                _remove_cgroup(cgroup)
        stderr = _read_capped(err_path, config.max_output_bytes)
        if not started:
            message = _failure_message(isolation, python, proc.returncode, stderr, timed_out)
            raise SandboxError(message, transient=timed_out)
        return SandboxResult(
            returncode=None if timed_out else proc.returncode,
            stdout=_read_capped(out_path, config.max_output_bytes),
            stderr=stderr,
            timed_out=timed_out,
            isolation=isolation,
        )

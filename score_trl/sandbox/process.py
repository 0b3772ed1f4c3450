"""Running model code: one sandboxed process tree per call, and the trusted test runner beside it.

`run_python` runs a program and returns what it printed. `run_tests` runs a solution in the sandbox as a server of
values and the problem's tests in a separate judge process outside it (`judge_main.py`), and returns the judge's
verdict. In both, the host reads only through descriptors it opened itself (pipes, unnamed temporary files): the
program's directory is a tmpfs inside the sandbox, so it cannot plant a FIFO, an immutable file or a symlink where
the host would look. Everything started for a call is killed before the call returns (pid namespace, cgroup,
process group).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from .config import SandboxConfig, SandboxError, SandboxResult
from .isolation import JOB_DIR, LIB_DIR, bwrap_command, site_setup, warn_unisolated
from .limits import limits_prefix, make_cgroup
from .seccomp import filter_program


__all__ = ["run_python", "run_tests"]

logger = logging.getLogger(__name__)
_HERE = os.path.dirname(os.path.abspath(__file__))
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def resolve_python(python: str | None) -> str:
    # The program runs with PATH=/usr/bin:/bin: a bare name or relative path would not resolve there as it does here.
    python = python or sys.executable
    if os.sep not in python:
        python = shutil.which(python) or python
    return os.path.abspath(python)


@dataclass
class _Launched:
    proc: subprocess.Popen
    isolation: str
    python: str
    start_fd: int
    stderr: object
    stdout: object
    cgroup: object
    reported: bool | None = None

    def kill(self) -> None:
        """Kill the whole tree: bwrap's pid namespace dies with it, the cgroup catches setsid() escapees."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.remove()

    def wait_started(self, timeout: float) -> bool | None:
        """Wait until the bootstrap reports that it started: True, False when it ended without starting, None when
        it did not start within `timeout`. The program's wall time counts from then: a slow start on a loaded machine
        is the sandbox's, not the program's."""
        poller = select.poll()  # not select(): a trainer may hold descriptors numbered past 1024
        poller.register(self.start_fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            self.reported = False  # a report that comes later is too late: the run is the sandbox's failure
            return None
        self.reported = os.read(self.start_fd, 1) == b"1"
        return self.reported

    def read(self, handle, limit: int) -> str:
        handle.seek(0)
        return handle.read(limit).decode("utf-8", errors="replace")

    def close(self) -> None:
        """Release what the host holds for this run (after `kill`, on every path, the failing ones too)."""
        os.close(self.start_fd)
        self.stdout.close()
        self.stderr.close()

    def failure(self, timed_out: bool, limit: int) -> SandboxError:
        stderr = self.read(self.stderr, limit)
        # bwrap and setpriv report their own failures as "bwrap: ..." / "setpriv: ..." lines.
        tool = next(
            (
                t
                for t in ("bwrap", "setpriv", "prlimit", "sh")
                if any(s.startswith(f"{t}:") for s in stderr.splitlines())
            ),
            None,
        )
        who = f"`{tool}`" if tool else f"the interpreter {self.python!r} ({self.isolation} mode)"
        if timed_out:
            how = "did not start the program within the wall time (raise SandboxConfig.wall_time on a loaded machine)"
        else:
            how = f"exited with status {self.proc.returncode} before running the program"
        message = f"The code sandbox failed, not the program: {who} {how}."
        if stderr.strip():
            message += f" Its error output: {stderr.strip()[-1000:]}"
        if tool == "bwrap":
            message += (
                " If bwrap cannot create namespaces here (some containers), allow unprivileged user namespaces; "
                "SandboxConfig(isolation='rlimits') runs without isolation (docs/rewards.md)."
            )
        elif not timed_out:
            message += " If it ran out of memory while starting, raise SandboxConfig.memory_mb."
        return SandboxError(message, transient=timed_out)


def _write_job(job_dir: str, files: dict[str, str]) -> None:
    # Readable by the sandbox's unprivileged user; the host never reads anything back from here.
    os.chmod(job_dir, 0o755)
    for name, text in files.items():
        path = os.path.join(job_dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)


def _launch(
    config: SandboxConfig, job_dir: str, args: list[str], pass_fds: tuple[int, ...], stdin: int = subprocess.PIPE
) -> _Launched:
    """Start the bootstrap in `mode` (`args`) under the configured isolation and limits."""
    isolation = "rlimits" if config.isolation == "rlimits" else "bwrap"
    python = resolve_python(config.python)
    cgroup = make_cgroup(config.memory_mb, config.max_processes)
    # Without a cgroup the budget is split, so that all processes together stay within memory_mb.
    per_process = config.memory_mb if cgroup is not None else max(config.memory_mb // config.max_processes, 1)
    nproc = 0 if cgroup is not None else config.max_processes + 1  # + bwrap's init in the pid namespace
    start_read, start_write = os.pipe()
    root, lib = (JOB_DIR, LIB_DIR) if isolation == "bwrap" else (job_dir, _HERE)
    # -I: ignore PYTHON* variables and the user's site directory; -S: the bootstrap adds site-packages itself; no -O,
    # so `assert` stays on.
    argv = [python, "-I", "-S", f"{lib}/bootstrap.py", site_setup(python), str(start_write), str(nproc)]
    argv += [a.format(job=root) for a in args]
    # unnamed files the host opened: outlive this function, closed once read (`_Launched.close`)
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    seccomp_fd = None
    try:
        if isolation == "bwrap":
            seccomp_fd, seccomp_write = os.pipe()
            os.write(seccomp_write, filter_program())  # a few hundred bytes: well within the pipe's buffer
            os.close(seccomp_write)
            command, cwd = bwrap_command(python, job_dir, config.tmpfs_mb, config.uid, argv, seccomp_fd), "/"
            pass_fds = (*pass_fds, seccomp_fd)
        else:
            command, cwd = argv, job_dir
        prefix = limits_prefix(
            config.cpu_time, per_process * 1024 * 1024, config.max_output_bytes, config.max_open_files, cgroup
        )
        proc = subprocess.Popen(
            [*prefix, *command],
            cwd=cwd,
            env=_ENV,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            pass_fds=(start_write, *pass_fds),
        )
    except (OSError, subprocess.SubprocessError, SandboxError) as error:
        os.close(start_read)
        stdout.close()
        stderr.close()
        if cgroup is not None:
            cgroup.remove()
        if isinstance(error, SandboxError):
            raise
        if isinstance(error, OSError):  # the interpreter (rlimits) or bwrap cannot be executed
            cause = f"{command[0]!r} cannot be executed: {error}"
        else:  # raised in the child before exec: a limit or the cgroup could not be applied
            cause = f"setting its resource limits or joining its cgroup failed: {error}"
        raise SandboxError(f"The code sandbox could not start ({isolation} mode): {cause}") from error
    finally:
        os.close(start_write)
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    return _Launched(proc, isolation, python, start_read, stderr, stdout, cgroup)


def run_python(source: str, config: SandboxConfig | None = None, stdin: str = "") -> SandboxResult:
    """Run `source` as a Python program under `config`'s limits and return what it did.

    Raises `SandboxError` when the sandbox itself failed (the program never ran), so that the failure is not read as
    the program's.
    """
    config = config or SandboxConfig()
    if config.isolation == "rlimits":
        warn_unisolated()
    with tempfile.TemporaryDirectory(prefix="score_trl_sbx_", ignore_cleanup_errors=True) as job_dir:
        _write_job(job_dir, {"program.py": source})
        launched = _launch(config, job_dir, ["run", "{job}/program.py"], ())
        timed_out = False
        try:
            try:
                if launched.wait_started(config.wall_time) is None:
                    timed_out = True
                else:
                    launched.proc.communicate(input=stdin.encode(), timeout=config.wall_time)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                launched.kill()
            if not launched.reported:
                raise launched.failure(timed_out, config.max_output_bytes)
            return SandboxResult(
                returncode=None if timed_out else launched.proc.returncode,
                stdout=launched.read(launched.stdout, config.max_output_bytes),
                stderr=launched.read(launched.stderr, config.max_output_bytes),
                timed_out=timed_out,
                isolation=launched.isolation,
            )
        finally:
            launched.close()


def run_tests(
    solution: str, tests: str, setup: str = "", entry_point: str | None = None, config: SandboxConfig | None = None
) -> tuple[bool | None, str]:
    """Run `tests` against `solution`: the solution in the sandbox, the tests in a judge process outside it.

    Returns (True, "") when every test passed, (False, why) when one failed or the program misbehaved, and
    (None, why) when the tests cannot be judged this way (they pass a value that cannot cross the boundary). Raises
    `SandboxError` when the sandbox or the judge itself failed.
    """
    config = config or SandboxConfig()
    limit = config.max_output_bytes
    with (
        tempfile.TemporaryDirectory(prefix="score_trl_sbx_", ignore_cleanup_errors=True) as job_dir,
        _Pipes() as pipes,
        tempfile.TemporaryFile() as judge_err,
    ):
        _write_job(job_dir, {"setup.py": setup, "solution.py": solution})
        request_read, request_write = pipes.pipe()
        response_read, response_write = pipes.pipe()
        verdict_read, verdict_write = pipes.pipe()
        # What the program sends the judge is capped at max_output_bytes; what the judge sends (the tests' own
        # arguments, or values it decoded and passes back) is the data set's and may be larger.
        request_limit = max(64 << 20, 2 * limit)
        args = [
            "serve", "{job}/setup.py", "{job}/solution.py", str(request_read), str(response_write), str(request_limit)
        ]  # fmt: skip
        # nothing for the program on stdin: its inputs are the tests' calls
        launched = _launch(config, job_dir, args, (request_read, response_write), stdin=subprocess.DEVNULL)
        judge, timed_out = None, False
        # the wall time, not the CPU limit, ends a judge kept busy by the program's values: a judge killed by its
        # own limit would read as a failure of the sandbox
        judge_cpu = max(config.cpu_time, math.ceil(config.wall_time)) + 5
        try:
            try:
                pipes.close(request_read, response_write)
                try:
                    judge = subprocess.Popen(
                        [*limits_prefix(judge_cpu, config.memory_mb << 20, limit, 256, None),
                         launched.python, "-I", "-S", os.path.join(_HERE, "judge_main.py"),
                         site_setup(launched.python), str(response_read),
                         str(request_write), str(verdict_write), str(limit)],
                        env=_ENV,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=judge_err,
                        start_new_session=True,
                        pass_fds=(response_read, request_write, verdict_write),
                    )  # fmt: skip
                except OSError as error:
                    raise SandboxError(f"The code sandbox's test runner could not start: {error}") from error
                pipes.close(response_read, request_write, verdict_write)
                payload = json.dumps({"setup": setup, "tests": tests, "entry_point": entry_point}).encode()
                try:
                    if launched.wait_started(config.wall_time) is None:
                        timed_out = True
                    else:
                        judge.communicate(input=payload, timeout=config.wall_time)
                except subprocess.TimeoutExpired:
                    timed_out = True
            finally:
                if judge is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(judge.pid, signal.SIGKILL)
                    judge.wait()
                launched.kill()
            if not launched.reported:
                raise launched.failure(timed_out, limit)
        finally:
            launched.close()
        if timed_out:
            return False, "timed out"
        verdict = pipes.read_all(verdict_read)
        try:
            result = json.loads(verdict)
        except ValueError:
            judge_err.seek(0)
            detail = judge_err.read(limit).decode("utf-8", errors="replace").strip()[-1000:]
            raise SandboxError(
                f"The code sandbox's test runner ({launched.python}) exited with status {judge.returncode} without a "
                f"verdict: {detail}"
            ) from None
        return result["passed"], result["why"]


class _Pipes:
    """Pipe ends that this call still holds, each closed exactly once (a descriptor number closed twice could be
    another thread's by then)."""

    def __init__(self):
        self.open: set[int] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close(*list(self.open))

    def pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open |= {read, write}
        return read, write

    def close(self, *fds: int) -> None:
        for fd in fds:
            if fd in self.open:
                self.open.discard(fd)
                os.close(fd)

    def read_all(self, fd: int) -> bytes:
        chunks = []
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        self.close(fd)
        return b"".join(chunks)

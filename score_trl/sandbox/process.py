"""Running model code: one sandboxed process tree per call, and the trusted test runner beside it.

`run_python` runs a program and returns what it printed. `run_tests` runs a solution in the sandbox as a server of
values and the problem's tests in a separate judge process outside it (`judge_main.py`), and returns the judge's
verdict. Nothing the program can reach is on the host's disk: its files come from memory, its output goes to pipes
read up to a cap (`streams.py`), and the only writable place it has is its sized tmpfs. The host reads only through
descriptors it opened itself. Everything started for a call is killed before the call returns (pid namespace,
cgroup, process group). The wall time does not count the time the run waited for a CPU (`deadline.py`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import marshal
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .config import SandboxConfig, SandboxError, SandboxResult
from .deadline import Deadline, descendants, exited
from .isolation import JOB_DIR, LIB_DIR, bwrap_command, interpreter_view, site_setup, warn_unisolated
from .limits import RunCgroup, limits_prefix, make_cgroup
from .names import free_names
from .seccomp import filter_program
from .streams import Drain, Pipes, memory_file


__all__ = ["FailedTest", "first_failure", "run_python", "run_tests"]

logger = logging.getLogger(__name__)
_HERE = os.path.dirname(os.path.abspath(__file__))
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def resolve_python(python: str | None) -> str:
    # The program runs with PATH=/usr/bin:/bin: a bare name or relative path would not resolve there as it does here.
    python = python or sys.executable
    if os.sep not in python:
        python = shutil.which(python) or python
    return os.path.abspath(python)


@functools.lru_cache(maxsize=1)
def _library() -> dict[str, bytes]:
    # what the sandbox needs of this package: read once, copied into each sandbox from memory
    names = ("bootstrap.py", "wire.py")
    return {name: open(os.path.join(_HERE, name), "rb").read() for name in names}  # noqa: SIM115 - closed by gc


@dataclass
class _Launched:
    proc: subprocess.Popen
    isolation: str
    python: str
    start_fd: int
    drain: Drain
    stdout: int  # the drain's keys for the program's output
    stderr: int
    cgroup: RunCgroup | None
    job_dir: tempfile.TemporaryDirectory | None = None  # isolation='rlimits' only: there is no sandbox to copy into
    reported: bool | None = None
    closed: bool = field(default=False, repr=False)

    def pids(self) -> list[int]:
        """The run's processes on the host (for the wall time's run-queue wait): its cgroup's, else bwrap's tree."""
        return self.cgroup.pids() if self.cgroup is not None else descendants(self.proc.pid)

    def kill(self) -> None:
        """Kill the whole tree: bwrap's pid namespace dies with it, the cgroup catches setsid() escapees. Then its
        output is complete."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.remove()
        self.drain.finish()

    def wait_started(self, deadline: Deadline) -> bool | None:
        """Wait until the bootstrap reports that it started: True, False when it ended without starting, None when
        it did not start in time. The program's wall time counts from then: a slow start on a loaded machine is the
        sandbox's, not the program's."""
        poller = select.poll()  # not select(): a trainer may hold descriptors numbered past 1024
        poller.register(self.start_fd, select.POLLIN)
        if not deadline.wait(lambda left: bool(poller.poll(left * 1000))):
            self.reported = False  # a report that comes later is too late: the run is the sandbox's failure
            return None
        self.reported = os.read(self.start_fd, 1) == b"1"
        return self.reported

    def close(self) -> None:
        """Release what the host holds for this run (after `kill`, on every path, the failing ones too)."""
        if not self.closed:
            self.closed = True
            os.close(self.start_fd)
            self.drain.finish()
            if self.job_dir is not None:
                self.job_dir.cleanup()

    def failure(self, timed_out: bool) -> SandboxError:
        stderr = self.drain.text(self.stderr)
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


def _write_job(job_dir: str, files: dict[str, bytes]) -> None:
    # isolation='rlimits': readable by the program, which runs as the user running training anyway
    for name, content in files.items():
        with open(os.path.join(job_dir, name), "wb") as f:
            f.write(content)


def _launch(
    config: SandboxConfig,
    files: dict[str, str],
    mode: str,
    args: list[str],
    pass_fds: tuple[int, ...],
    drain: Drain,
    stdin: bytes | None = None,
) -> _Launched:
    """Start the bootstrap in `mode` with `args` and the run's `files` under the configured isolation and limits;
    its output goes to `drain`, which is started here. `stdin` None: /dev/null."""
    isolation = "rlimits" if config.isolation == "rlimits" else "bwrap"
    python = resolve_python(config.python)
    cgroup = make_cgroup(config.memory_mb, config.max_processes)
    # Without a cgroup the budget is split, so that all processes together stay within memory_mb.
    per_process = config.memory_mb if cgroup is not None else max(config.memory_mb // config.max_processes, 1)
    nproc = 0 if cgroup is not None else config.max_processes + 1  # + bwrap's init in the pid namespace
    start_read, start_write = os.pipe()
    stdout, stdout_write = drain.pipe()
    stderr, stderr_write = drain.pipe()
    stdin_fd = drain.feed(stdin) if stdin is not None else subprocess.DEVNULL
    held = [start_write, stdout_write, stderr_write] + ([stdin_fd] if stdin is not None else [])
    job_dir, command = None, None
    try:
        if isolation == "bwrap":
            root, lib, (_, inside, site) = JOB_DIR, LIB_DIR, interpreter_view(python)
        else:
            job_dir = tempfile.TemporaryDirectory(prefix="score_trl_sbx_", ignore_cleanup_errors=True)
            root, lib, inside, site = job_dir.name, _HERE, python, site_setup(python)
        job = {"site": json.loads(site), "start_fd": start_write, "nproc": nproc, "mode": mode}
        job["args"] = [a.format(job=root) for a in args]
        data = {name: text.encode() for name, text in files.items()}
        data["job"] = marshal.dumps(job, 4)  # version 4: any Python 3 reads it, and the bootstrap imports no json
        # -I: ignore PYTHON* variables and the user's site directory; -S: the bootstrap adds site-packages itself;
        # no -O, so `assert` stays on.
        argv = [inside, "-I", "-S", f"{lib}/bootstrap.py", f"{root}/job"]
        if isolation == "bwrap":
            data = {f"{root}/{name}": content for name, content in data.items()}
            data |= {f"{lib}/{name}": content for name, content in _library().items()}
            memory = {path: memory_file(content, os.path.basename(path)) for path, content in data.items()}
            held += memory.values()
            held.append(seccomp_fd := memory_file(filter_program(), "seccomp"))
            command, args_fd = bwrap_command(python, config.tmpfs_mb, config.uid, argv, seccomp_fd, memory)
            held.append(args_fd)
            cwd, pass_fds = "/", (*pass_fds, seccomp_fd, args_fd, *memory.values())
        else:
            _write_job(job_dir.name, data)
            command, cwd = argv, job_dir.name
        prefix = limits_prefix(
            config.cpu_time, per_process * 1024 * 1024, config.max_output_bytes, config.max_open_files, cgroup
        )
        proc = subprocess.Popen(
            [*prefix, *command],
            cwd=cwd,
            env=_ENV,
            stdin=stdin_fd,
            stdout=stdout_write,
            stderr=stderr_write,
            start_new_session=True,
            pass_fds=(start_write, *pass_fds),
        )
    except (OSError, subprocess.SubprocessError, SandboxError) as error:
        os.close(start_read)
        drain.finish()
        if job_dir is not None:
            job_dir.cleanup()
        if cgroup is not None:
            cgroup.remove()
        if isinstance(error, SandboxError):
            raise
        if isinstance(error, OSError):  # the interpreter (rlimits) or bwrap cannot be executed
            cause = f"{(command or argv)[0]!r} cannot be executed: {error}"
        else:  # raised in the child before exec: a limit or the cgroup could not be applied
            cause = f"setting its resource limits or joining its cgroup failed: {error}"
        raise SandboxError(f"The code sandbox could not start ({isolation} mode): {cause}") from error
    finally:
        for fd in held:
            os.close(fd)
    drain.start()
    return _Launched(proc, isolation, python, start_read, drain, stdout, stderr, cgroup, job_dir)


def run_python(source: str, config: SandboxConfig | None = None, stdin: str = "") -> SandboxResult:
    """Run `source` as a Python program under `config`'s limits and return what it did.

    Raises `SandboxError` when the sandbox itself failed (the program never ran), so that the failure is not read as
    the program's.
    """
    config = config or SandboxConfig()
    if config.isolation == "rlimits":
        warn_unisolated()
    drain = Drain(config.max_output_bytes)
    # The start's limit counts from before the launch: counted from after it, the time this thread waited for a CPU
    # in between went to the start, and under load a start slower than wall_time passed as in time (the limit's
    # extension is the run's own wait only)
    starting = Deadline(config.wall_time, lambda: launched.pids())
    launched = _launch(config, {"program.py": source}, "run", ["{job}/program.py"], (), drain, stdin.encode())
    timed_out = False
    try:
        try:
            if launched.wait_started(starting) is None:
                timed_out = True
            else:
                timed_out = not Deadline(config.wall_time, launched.pids).wait(lambda t: exited(launched.proc, t))
        finally:
            launched.kill()
        if not launched.reported:
            raise launched.failure(timed_out)
        return SandboxResult(
            returncode=None if timed_out else launched.proc.returncode,
            stdout=drain.text(launched.stdout),
            stderr=drain.text(launched.stderr),
            timed_out=timed_out,
            isolation=launched.isolation,
        )
    finally:
        launched.close()


@dataclass(frozen=True)
class FailedTest:
    """Where a program failed its tests, from the judge and the tests alone (never from what the program wrote):
    the failing test's source line (None when the program failed outside the tests) and the error's builtin name,
    or "timed out", or "did not load" (it did not compile, or raised while it was loaded)."""

    test: str | None
    error: str


def first_failure(
    solution: str, tests: str, setup: str = "", entry_point: str | None = None, config: SandboxConfig | None = None
) -> FailedTest | None:
    """`run_tests`, telling where the program failed: None when it passed or cannot be judged, else a `FailedTest`
    (what a feedback turn may show the model)."""
    verdict = _judge(solution, tests, setup, entry_point, config)
    if verdict["passed"] is not False:
        return None
    if verdict["why"] == "timed out":
        return FailedTest(None, "timed out")
    line = verdict.get("line")
    lines = tests.splitlines()
    test = lines[line - 1].strip() if isinstance(line, int) and 0 < line <= len(lines) else None
    return FailedTest(test, verdict.get("error") or "did not load")


def run_tests(
    solution: str, tests: str, setup: str = "", entry_point: str | None = None, config: SandboxConfig | None = None
) -> tuple[bool | None, str]:
    """Run `tests` against `solution`: the solution in the sandbox, the tests in a judge process outside it.

    Returns (True, "") when every test passed, (False, why) when one failed or the program misbehaved, and
    (None, why) when the tests cannot be judged this way (they pass a value that cannot cross the boundary). Raises
    `SandboxError` when the sandbox or the judge itself failed.
    """
    verdict = _judge(solution, tests, setup, entry_point, config)
    return verdict["passed"], verdict["why"]


def _judge(solution: str, tests: str, setup: str, entry_point: str | None, config: SandboxConfig | None) -> dict:
    config = config or SandboxConfig()
    limit = config.max_output_bytes
    drain = Drain(limit)
    with Pipes() as pipes:
        request_read, request_write = pipes.pipe()
        response_read, response_write = pipes.pipe()
        verdict_read, verdict_write = pipes.pipe()
        judge_err, judge_err_write = drain.pipe()  # before the drain starts; the judge's own, read the same way
        pipes.open.add(judge_err_write)
        # What the program sends the judge is capped at max_output_bytes; what the judge sends (the tests' own
        # arguments, or values it decoded and passes back) is the data set's and may be larger.
        request_limit = max(64 << 20, 2 * limit)
        args = ["{job}/setup.py", "{job}/solution.py", str(request_read), str(response_write), str(request_limit)]
        files = {"setup.py": setup, "solution.py": solution}
        try:
            starting = Deadline(config.wall_time, lambda: launched.pids())  # from before the launch, as in run_python
            launched = _launch(config, files, "serve", args, (request_read, response_write), drain)
        finally:
            pipes.close(request_read, response_write)
        judge, timed_out = None, False
        # the wall time (at most twice wall_time under load), not the CPU limit, ends a judge kept busy by the
        # program's values: a judge killed by its own limit would read as a failure of the sandbox
        judge_cpu = max(config.cpu_time, math.ceil(2 * config.wall_time)) + 5
        try:
            try:
                job = {"site": json.loads(site_setup(launched.python)), "setup": setup, "tests": tests,
                       "entry_point": entry_point, "names": None, "error": ""}  # fmt: skip
                try:
                    job["names"] = sorted(free_names(tests, setup))
                except SyntaxError as error:
                    job["error"] = str(error)
                # the judge's stdin, which never blocks the host; marshal (version 4: any Python 3 reads it) costs
                # the judge no import
                payload_fd = memory_file(marshal.dumps(job, 4), "tests")
                try:
                    judge = subprocess.Popen(
                        [*limits_prefix(judge_cpu, config.memory_mb << 20, limit, 256, None),
                         launched.python, "-I", "-S", os.path.join(_HERE, "judge_main.py"), str(response_read),
                         str(request_write), str(verdict_write), str(limit)],
                        env=_ENV,
                        stdin=payload_fd,
                        stdout=subprocess.DEVNULL,
                        stderr=judge_err_write,
                        start_new_session=True,
                        pass_fds=(response_read, request_write, verdict_write),
                    )  # fmt: skip
                except OSError as error:
                    raise SandboxError(f"The code sandbox's test runner could not start: {error}") from error
                finally:
                    os.close(payload_fd)
                    pipes.close(response_read, request_write, verdict_write, judge_err_write)

                def pids() -> list[int]:
                    return [judge.pid, *launched.pids()]

                if launched.wait_started(starting) is None:
                    timed_out = True
                else:
                    timed_out = not Deadline(config.wall_time, pids).wait(lambda t: exited(judge, t))
            finally:
                if judge is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(judge.pid, signal.SIGKILL)
                    judge.wait()
                launched.kill()
            if not launched.reported:
                raise launched.failure(timed_out)
        finally:
            launched.close()
        if timed_out:
            return {"passed": False, "why": "timed out"}
        verdict = pipes.read_all(verdict_read)
        try:
            result = marshal.loads(verdict)  # the judge's own, on a pipe the program cannot reach
        except (ValueError, EOFError, TypeError):
            detail = drain.text(judge_err).strip()[-1000:]
            raise SandboxError(
                f"The code sandbox's test runner ({launched.python}) exited with status {judge.returncode} without a "
                f"verdict: {detail}"
            ) from None
        return result

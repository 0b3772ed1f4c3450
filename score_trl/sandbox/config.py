"""What a sandboxed run may use (`SandboxConfig`), what it did (`SandboxResult`), and how the sandbox itself fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


__all__ = ["SandboxConfig", "SandboxError", "SandboxResult"]


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
    """Limits for one sandboxed run. Defaults suit MBPP/HumanEval-sized programs.

    Time: `wall_time`, `cpu_time`. Space: `memory_mb` (all the program's processes together, its `/tmp` included),
    `tmpfs_mb`, `max_output_bytes`, `max_open_files`, `max_processes`. Isolation: `isolation`, `uid`. The interpreter:
    `python`.
    """

    wall_time: float = field(default=5.0, metadata={"help": "Seconds of wall-clock time before the run is killed."})
    cpu_time: int = field(default=5, metadata={"help": "Seconds of CPU time per process (RLIMIT_CPU)."})
    memory_mb: int = field(
        default=4096,
        metadata={
            "help": "MiB of memory for the program and all its processes together, its /tmp included (a memory "
            "cgroup). Where no cgroup can be made (training not run as root), each process gets "
            "memory_mb / max_processes of address space, so the total stays within memory_mb."
        },
    )
    max_processes: int = field(
        default=16,
        metadata={"help": "Processes and threads the program may run at once (pids cgroup, else RLIMIT_NPROC)."},
    )
    max_output_bytes: int = field(
        default=1 << 20,
        metadata={"help": "Cap on stdout and stderr each, on any file written, and on one value returned to a test."},
    )
    max_open_files: int = field(default=64, metadata={"help": "File descriptors per process (RLIMIT_NOFILE)."})
    tmpfs_mb: int = field(
        default=64, metadata={"help": "Size in MiB of the program's private, writable /tmp (its working directory)."}
    )
    isolation: Literal["auto", "bwrap", "rlimits"] = field(
        default="auto",
        metadata={
            "help": "'auto' or 'bwrap': bubblewrap namespaces, required (the run refuses to start without them). "
            "'rlimits': NO isolation, only resource limits; model code can read and write what training can and use "
            "the network. An explicit opt-in that logs a warning on every batch."
        },
    )
    python: str | None = field(
        default=None,
        metadata={
            "help": "Interpreter that runs the program and the tests (default: `sys.executable`, the one running "
            "training). Its installation is bound read-only into the sandbox wherever it lives."
        },
    )
    uid: int = field(
        default=65534,
        metadata={
            "help": "User and group id the program runs as when training runs as root (default: nobody). A plain "
            "user's program runs as that user, in a user namespace without capabilities."
        },
    )

    def __post_init__(self):
        for name in ("wall_time", "cpu_time", "memory_mb", "max_processes", "max_output_bytes", "max_open_files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)!r}.")
        if self.tmpfs_mb < 0:
            raise ValueError(f"SandboxConfig.tmpfs_mb must be >= 0, got {self.tmpfs_mb!r}.")
        if self.isolation not in ("auto", "bwrap", "rlimits"):
            raise ValueError(
                f"SandboxConfig.isolation must be 'auto', 'bwrap' or 'rlimits', got {self.isolation!r}: 'auto' and "
                "'bwrap' isolate, 'rlimits' opts in to running model code without isolation."
            )
        if self.uid <= 0:
            raise ValueError(f"SandboxConfig.uid must be an unprivileged id (> 0), got {self.uid!r}.")


@dataclass
class SandboxResult:
    """What a sandboxed run did. `stdout`/`stderr` are cut at `max_output_bytes`."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    isolation: str

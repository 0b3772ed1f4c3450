"""How model code is isolated: bubblewrap namespaces with a minimal, read-only view, no capabilities, no host root.

The view: the system's libraries and programs (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc/ld.so.cache`), the
interpreter's installation (a virtualenv at `VENV_DIR`, the Python it was made from where it lives), the run's own
files at `JOB_DIR` and the bootstrap at `LIB_DIR` (read-only, copied from memory: no host directory is bound for
them), and private, sized tmpfs at `/tmp` and `/dev/shm` as the only writable places. A seccomp filter
(`seccomp.py`) closes the kernel interfaces a test never needs. Never `/`, `$HOME`, the trainer's environment, its
checkpoints or host sockets. Its own pid, network, IPC, UTS and cgroup namespaces, and its own `/proc`: only the
sandbox's processes show there, and their command lines name no host path (bwrap reads its options from a
descriptor).

Who runs it: a plain user's program runs as that user inside a user namespace with every capability dropped. As
root, bwrap sets up the mounts (so an interpreter under `/root` stays reachable) and `setpriv` then switches to the
unprivileged `SandboxConfig.uid` with empty capability sets, bounding set and supplementary groups, before the
interpreter starts: the program is never host root and holds no capability.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess

from .config import SandboxError
from .streams import memory_file


__all__ = [
    "JOB_DIR", "LIB_DIR", "VENV_DIR", "bwrap_command", "interpreter_view", "require_bwrap", "site_setup",
    "warn_unisolated",
]  # fmt: skip

logger = logging.getLogger(__name__)
JOB_DIR = "/.score_trl_job"  # the run's files (program, setup, arguments), copied from memory
LIB_DIR = "/.score_trl_sandbox"  # the bootstrap and the value codec, copied from memory
VENV_DIR = "/.score_trl_venv"  # the interpreter's virtualenv, if it has one (`interpreter_view`)
# Where the interpreter's installation lives, asked of the interpreter itself (it need not be the one running us).
_PREFIX_PROBE = (
    "import json, sys; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, "
    "sys.base_exec_prefix]))"
)
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
INSTALL_HINT = (
    "Install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`), or opt in to running model code "
    "without isolation with SandboxConfig(isolation='rlimits') (resource limits only: the code can read and write "
    "what training can and use the network; a warning is logged on every batch)."
)


def bwrap() -> str | None:
    # An absolute path: the child's scrubbed PATH (/usr/bin:/bin) would not find a bwrap in /usr/local/bin.
    return shutil.which("bwrap")


def require_bwrap() -> str:
    path = bwrap()
    if path is None:
        raise SandboxError(f"The code sandbox needs bubblewrap (`bwrap`), which is not installed. {INSTALL_HINT}")
    return path


def warn_unisolated() -> None:
    logger.warning(
        "SandboxConfig(isolation='rlimits'): model code runs WITHOUT isolation (resource limits only); it can read "
        "and write what training can, reach the network and escape the process-group kill. Install bubblewrap and "
        "use isolation='auto'."
    )


@functools.lru_cache(maxsize=8)
def interpreter_prefixes(python: str) -> tuple[str, ...]:
    """The interpreter's executable and installation prefixes, as it reports them in isolated mode (`-I`)."""
    try:
        probe = subprocess.run(
            [python, "-I", "-c", _PREFIX_PROBE], capture_output=True, text=True, timeout=60, env={"LANG": "C.UTF-8"}
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise SandboxError(f"The sandbox interpreter {python!r} cannot be run: {error}") from error
    if probe.returncode != 0:
        raise SandboxError(
            f"The sandbox interpreter {python!r} exited with status {probe.returncode} before running any program: "
            f"{probe.stderr.strip()[-1000:]}"
        )
    return tuple(json.loads(probe.stdout))


@functools.lru_cache(maxsize=8)
def site_setup(python: str) -> str:
    """What `site` sets up for the interpreter (the import paths it adds, and a virtualenv's `sys.prefix`), as the
    JSON the bootstrap and the judge apply themselves: they run with `-S`, since processing `.pth` files cost 15 ms
    of each 25 ms interpreter start."""
    probe = "import json, sys; print(json.dumps([sys.path, sys.prefix, sys.exec_prefix]))"
    found = []
    for flags in (["-I"], ["-I", "-S"]):
        try:
            run = subprocess.run([python, *flags, "-c", probe], capture_output=True, text=True, timeout=60)
            found.append(json.loads(run.stdout) if run.returncode == 0 else [[], None, None])
        except (OSError, subprocess.SubprocessError, ValueError):
            found.append([[], None, None])
    (with_site, prefix, exec_prefix), without_site = found[0], found[1][0]
    added = [path for path in with_site if path and path not in without_site]
    return json.dumps({"path": added, "prefix": prefix, "exec_prefix": exec_prefix})


def _is_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.lru_cache(maxsize=8)
def interpreter_view(python: str) -> tuple[tuple[str, ...], str, str]:
    """How the sandbox sees the interpreter: the bwrap arguments that bind its installation read-only, its path
    inside, and `site_setup` as seen from inside.

    A virtualenv (the usual home of training's interpreter, somewhere in the user's work) is bound at `VENV_DIR`, so
    that its host path shows nowhere inside: not in a command line, `sys.path` or a mount point (the kernel still
    names a bind mount's source in mountinfo's root column). Python finds a virtualenv from `pyvenv.cfg` beside the
    path it was started by, so it runs from there as it would from home. The installation it was made from, and an
    interpreter that is not a virtualenv's, keep their real paths: a virtualenv's symlinks and a shared libpython's
    run path name them. Each such prefix is bound at its real path and at the (possibly symlinked) path the
    interpreter knows it by; nothing already visible through `/usr`, and never `/` itself."""
    executable, prefix, base_prefix, exec_prefix, base_exec_prefix = interpreter_prefixes(python)
    moved: dict[str, str] = {}  # host path -> path inside
    if prefix != base_prefix and exec_prefix == prefix and _is_below(executable, prefix):
        moved = {prefix: VENV_DIR, os.path.realpath(prefix): VENV_DIR}
        inside = VENV_DIR + executable[len(prefix) :]
        wanted = {os.path.dirname(os.path.realpath(executable)), base_prefix, base_exec_prefix}
    else:
        inside = python
        wanted = {os.path.dirname(executable), os.path.dirname(python), prefix, base_prefix, exec_prefix,
                  base_exec_prefix}  # fmt: skip
    binds: dict[str, str] = {}
    for path in wanted:
        if not path or not os.path.isdir(path) or any(_is_below(os.path.realpath(path), m) for m in moved):
            continue
        real = os.path.realpath(path)
        for dest in {real, os.path.abspath(path)}:
            if dest != "/" and real != "/" and not _is_below(dest, "/usr"):
                binds[dest] = real
    args, bound, made = [], [], set()
    for dest in sorted(binds):  # parents first; a path inside one already bound needs no mount of its own
        if not any(_is_below(dest, parent) for parent in bound):
            # bwrap would copy the host's modes onto the mount point's parents (mkdtemp's 0700): the unprivileged
            # user could not reach the installation through them
            parents = [p for p in _ancestors(dest) if p not in ("/", "/tmp") and p not in made]
            for parent in parents:
                args += ["--perms", "0755", "--dir", parent]
            made.update(parents)
            args += ["--ro-bind", binds[dest], dest]
            bound.append(dest)
    if moved:
        args += ["--ro-bind", os.path.realpath(prefix), VENV_DIR]
    site = json.loads(site_setup(python))

    def seen(path: str | None) -> str | None:
        for host, dest in moved.items():
            if path and _is_below(path, host):
                return dest + path[len(host) :]
        return path

    # a path that is not in the view (an editable install's source tree) would only name a host directory
    visible = [*bound, *moved.values(), "/usr"]
    paths = [seen(path) for path in site["path"]]
    site = {
        "path": [path for path in paths if any(_is_below(path, root) for root in visible)],
        "prefix": seen(site["prefix"]),
        "exec_prefix": seen(site["exec_prefix"]),
    }
    return tuple(args), inside, json.dumps(site)


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


@functools.lru_cache(maxsize=1)
def _supports(flag: str) -> bool:
    try:
        return flag in subprocess.run([require_bwrap(), "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def bwrap_command(
    python: str, tmpfs_mb: int, uid: int, argv: list[str], seccomp_fd: int, files: dict[str, int]
) -> tuple[list[str], int]:
    """The command that runs `argv` (the interpreter inside, `interpreter_view`, and its arguments) in the sandbox,
    with the seccomp filter (`seccomp.py`) that bwrap reads from `seccomp_fd` and `files` (path inside -> descriptor
    of an in-memory file) read-only, and the descriptor of bwrap's options, which the caller passes and closes. The
    options name host paths: read from a descriptor (`--args`), they are in no command line the program can read
    (bwrap's own is its pid 1's)."""
    options, command = _bwrap_options(python, tmpfs_mb, uid, argv, seccomp_fd, files)
    bwrap = require_bwrap()
    args_fd = memory_file(b"".join(option.encode() + b"\0" for option in options), "bwrap-args")
    return [bwrap, "--args", str(args_fd), "--", *command], args_fd


def _bwrap_options(
    python: str, tmpfs_mb: int, uid: int, argv: list[str], seccomp_fd: int, files: dict[str, int]
) -> tuple[list[str], list[str]]:
    as_root = os.geteuid() == 0
    binds = []
    for directory in sorted({os.path.dirname(path) for path in files}):
        binds += ["--perms", "0755", "--dir", directory]
    for path, fd in files.items():
        binds += ["--perms", "0444", "--ro-bind-data", str(fd), path]
    options = [
        *_system_binds(),
        "--proc", "/proc", "--dev", "/dev",
        # bwrap's /dev is a tmpfs without a size, writable by a plain user's sandbox: /dev/shm gets a size of its own
        # and the rest of /dev is made read-only below
        "--perms", "1777", "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/dev/shm",
        "--perms", "1777", "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp", "--chdir", "/tmp",
        # after /tmp: an interpreter installed below it (a virtualenv made under /tmp, as CI and tox do) is bound
        # back over the private tmpfs, read-only, and nothing else of the host's /tmp is visible
        *interpreter_view(python)[0],
        # the run's files and this package's bootstrap, copied from memory: no host directory is bound for them
        *binds,
        # the root bwrap builds is a tmpfs without a size: read-only, so /tmp stays the only (sized) writable place
        "--remount-ro", "/", "--remount-ro", "/dev",
        "--seccomp", str(seccomp_fd),
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session",
    ]  # fmt: skip
    if as_root:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxError(
                "Training runs as root, and the code sandbox needs `setpriv` (util-linux) to run model code as an "
                "unprivileged user: install util-linux, or train as a plain user."
            )
        # bwrap as root keeps every capability for its child unless told otherwise; setpriv drops them all (and the
        # uid) in the same step, so the interpreter never runs privileged.
        drop = [
            setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--",
        ]  # fmt: skip
        return options, [*drop, *argv]
    options += ["--unshare-user", "--cap-drop", "ALL"]
    if _supports("--disable-userns"):
        options.append("--disable-userns")
    return options, argv

"""How model code is isolated: bubblewrap namespaces with a minimal, read-only view, no capabilities, no host root.

The view: the system's libraries and programs (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc/ld.so.cache`), the
interpreter's installation (its prefixes: a virtualenv and the Python it was made from, wherever they live), the
run's own files at `JOB_DIR` (read-only), and private, sized tmpfs at `/tmp` and `/dev/shm` as the only writable
places. A seccomp filter (`seccomp.py`) closes kernel keyrings, new user namespaces and mounts. Never `/`,
`$HOME`, the trainer's environment, its checkpoints or host sockets. Its own pid, network, IPC, UTS and cgroup
namespaces.

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


__all__ = ["JOB_DIR", "LIB_DIR", "bwrap_command", "require_bwrap", "site_setup", "warn_unisolated"]

logger = logging.getLogger(__name__)
JOB_DIR = "/.score_trl_job"
LIB_DIR = "/.score_trl_sandbox"  # this package's directory, read-only: the bootstrap and the value codec
_HERE = os.path.dirname(os.path.abspath(__file__))
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


def _interpreter_binds(python: str) -> list[str]:
    """`--ro-bind SRC DEST` for the interpreter's installation: each prefix at its real path and at the (possibly
    symlinked) path the interpreter knows it by; the executable's directory for an interpreter outside any prefix.
    Nothing already visible through `/usr` and never `/` itself."""
    executable, *prefixes = interpreter_prefixes(python)
    wanted = {os.path.dirname(executable), os.path.dirname(python), *prefixes}
    binds: dict[str, str] = {}
    for path in wanted:
        if not path or not os.path.isdir(path):
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
    return args


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


def bwrap_command(python: str, job_dir: str, tmpfs_mb: int, uid: int, argv: list[str], seccomp_fd: int) -> list[str]:
    """The command that runs `argv` (the interpreter and its arguments) in the sandbox, with the seccomp filter
    (`seccomp.py`) that bwrap reads from `seccomp_fd`."""
    as_root = os.geteuid() == 0
    command = [
        require_bwrap(),
        *_system_binds(),
        "--proc", "/proc", "--dev", "/dev",
        # bwrap's /dev is a tmpfs without a size, writable by a plain user's sandbox: /dev/shm gets a size of its own
        # and the rest of /dev is made read-only below
        "--perms", "1777", "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/dev/shm",
        "--perms", "1777", "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp", "--chdir", "/tmp",
        # after /tmp: an interpreter installed below it (a virtualenv made under /tmp, as CI and tox do) is bound
        # back over the private tmpfs, read-only, and nothing else of the host's /tmp is visible
        *_interpreter_binds(python),
        "--ro-bind", job_dir, JOB_DIR, "--ro-bind", _HERE, LIB_DIR,
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
        return [*command, *drop, *argv]
    command += ["--unshare-user", "--cap-drop", "ALL"]
    if _supports("--disable-userns"):
        command.append("--disable-userns")
    return [*command, "--", *argv]

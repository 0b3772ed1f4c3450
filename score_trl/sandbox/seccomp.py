"""A seccomp filter for the sandboxed program: the kernel interfaces a test program never needs, closed.

What namespaces and dropped capabilities leave open, refused with EPERM:
- kernel keyrings (`add_key`, `request_key`, `keyctl`): as root every run is the same uid, and a user's keyring
  outlives the run, so one program could leave answers for the next;
- new user namespaces (`unshare`, `clone` with CLONE_NEWUSER, `setns`): inside one a program holds every capability
  again, over its own namespaces, and reaches much more of the kernel;
- mounts, old API and new (`mount`, `umount2`, `pivot_root`, `open_tree`, `move_mount`, `fsopen`, ...) and the
  calls that list them (`statmount`, `listmount`);
- large kernel surfaces with a history of exploits and no use in a test: `bpf`, `perf_event_open`, `userfaultfd`;
- reaching into other processes: `ptrace`, `process_vm_readv` / `writev`, `pidfd_getfd`, `kcmp`, `process_madvise`;
- the machine's own state, which needs capabilities it never holds (kexec, modules, swap, reboot, clocks, quotas,
  `acct`, `syslog`, `open_by_handle_at`, `fanotify_init`, `iopl`, ...): refused before any permission check runs.
io_uring (`io_uring_setup`, `_enter`, `_register`) fails with ENOSYS, as on a kernel without it, so that a library
falls back to plain syscalls: the operations it submits run in kernel threads that seccomp never sees, which is why
Docker's and containerd's default profiles deny it too. `clone3` fails with ENOSYS (its flags cannot be inspected;
libc falls back to `clone`). Only the native 64-bit ABIs of x86-64 and AArch64 are allowed: any other (32-bit
`int 0x80`, x32) fails with ENOSYS, so the filter cannot be sidestepped through another ABI's syscall numbers.
System V IPC (shared memory, message queues, semaphores) fails with ENOSYS, as on a kernel built without it: a
segment outlives its detach until the IPC namespace ends, so without a memory cgroup (a plain user) a program held
1 GiB under `memory_mb=512` by attaching, filling and detaching segments in turn (and `msgmni` queues of `msgmnb`
bytes, or `semmni` arrays of `semmsl` semaphores, are hundreds of MiB more). POSIX shared memory lives in the sized
`/dev/shm`, and `multiprocessing` uses nothing else.

bwrap installs it (`--seccomp FD`) just before it runs the program, as classic BPF built here without libseccomp.
"""

from __future__ import annotations

import errno
import struct


__all__ = ["DENIED", "filter_program"]

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
_ARCHES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # AUDIT_ARCH_*
# name: (x86-64 number, AArch64 number), None where the architecture has no such call (<asm/unistd.h>)
DENIED = {
    "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219),
    "unshare": (272, 97), "setns": (308, 268),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "mount_setattr": (442, 442), "statmount": (457, 457), "listmount": (458, 458),
    "open_tree_attr": (467, 467), "chroot": (161, 51),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438), "kcmp": (312, 272), "process_madvise": (440, 440),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "swapon": (167, 224), "swapoff": (168, 225),
    "reboot": (169, 142), "acct": (163, 89), "settimeofday": (164, 170), "clock_settime": (227, 112),
    "clock_adjtime": (305, 266), "adjtimex": (159, 171), "syslog": (103, 116), "quotactl": (179, 60),
    "quotactl_fd": (443, 443), "lookup_dcookie": (212, 18), "open_by_handle_at": (304, 265),
    "fanotify_init": (300, 262), "vhangup": (153, 58), "nfsservctl": (180, 42), "iopl": (172, None),
    "ioperm": (173, None), "uselib": (134, None), "_sysctl": (156, None),
}  # fmt: skip
UNIMPLEMENTED = {
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "clone3": (435, 435),
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "shmdt": (67, 197),
    "msgget": (68, 186), "msgsnd": (69, 189), "msgrcv": (70, 188), "msgctl": (71, 187),
    "semget": (64, 190), "semop": (65, 193), "semctl": (66, 191), "semtimedop": (220, 192),
}  # fmt: skip
_CLONE = (56, 220)


def filter_program() -> bytes:
    """The filter as the array of `struct sock_filter` that `bwrap --seccomp` reads."""
    code: list[tuple] = []  # (opcode, jump-if-true label, jump-if-false label, k); labels resolved below
    labels: dict[str, int] = {}

    def emit(op: int, k: int, true: str | None = None, false: str | None = None) -> None:
        code.append((op, true, false, k))

    def label(name: str) -> None:
        labels[name] = len(code)

    emit(_LD_W_ABS, 4)  # seccomp_data.arch
    for name, arch in _ARCHES.items():
        emit(_JEQ, arch, true=name)
    emit(_RET, _ERRNO | errno.ENOSYS)  # another ABI
    for column, name in enumerate(_ARCHES):
        label(name)
        emit(_LD_W_ABS, 0)  # seccomp_data.nr
        if name == "x86_64":
            emit(_JGE, _X32_BIT, true="enosys")
        for numbers, verdict in ((DENIED, "eperm"), (UNIMPLEMENTED, "enosys")):
            for number in sorted({n[column] for n in numbers.values()} - {None}):
                emit(_JEQ, number, true=verdict)
        emit(_JEQ, _CLONE[column], true="clone")
        emit(_RET, _ALLOW)
    label("clone")
    emit(_LD_W_ABS, 16)  # low 32 bits of args[0] (little-endian): clone's flags on both ABIs
    emit(_JSET, _CLONE_NEWUSER, true="eperm")
    emit(_RET, _ALLOW)
    label("eperm")
    emit(_RET, _ERRNO | errno.EPERM)
    label("enosys")
    emit(_RET, _ERRNO | errno.ENOSYS)

    out = b""
    for i, (op, true, false, k) in enumerate(code):
        jt = labels[true] - i - 1 if true else 0
        jf = labels[false] - i - 1 if false else 0
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("a jump too long for classic BPF (8-bit offsets): split the list of denied calls")
        out += struct.pack("=HBBI", op, jt, jf, k)
    return out

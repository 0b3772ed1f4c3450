"""A seccomp filter for the sandboxed program: no kernel keyrings, no new user namespaces, no mounts.

What namespaces and dropped capabilities leave open:
- kernel keyrings (`add_key`, `request_key`, `keyctl`): as root every run is the same uid, and a user's keyring
  outlives the run, so one program could leave answers for the next;
- new user namespaces (`unshare`, `clone` with CLONE_NEWUSER, `setns`): inside one a program holds every capability
  again, over its own namespaces, and reaches much more of the kernel;
- `mount`, `umount2`, `pivot_root`: nothing a test program needs.
They fail with EPERM. `clone3` fails with ENOSYS (its flags cannot be inspected; libc falls back to `clone`). Only the
native 64-bit ABIs of x86-64 and AArch64 are allowed: any other (32-bit `int 0x80`, x32) fails with ENOSYS, so the
filter cannot be sidestepped through another ABI's syscall numbers.

bwrap installs it (`--seccomp FD`) just before it runs the program, as classic BPF built here without libseccomp.
"""

from __future__ import annotations

import errno
import struct


__all__ = ["filter_program"]

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
# (audit arch, denied syscall numbers, clone, clone3)
_ARCHES = {
    "x86_64": (0xC000003E, {"add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "setns": 308,
                            "mount": 165, "umount2": 166, "pivot_root": 155}, 56, 435),
    "aarch64": (0xC00000B7, {"add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97, "setns": 268,
                             "mount": 40, "umount2": 39, "pivot_root": 41}, 220, 435),
}  # fmt: skip


def filter_program() -> bytes:
    """The filter as the array of `struct sock_filter` that `bwrap --seccomp` reads."""
    code: list[tuple] = []  # (opcode, jump-if-true label, jump-if-false label, k); labels resolved below
    labels: dict[str, int] = {}

    def emit(op: int, k: int, true: str | None = None, false: str | None = None) -> None:
        code.append((op, true, false, k))

    def label(name: str) -> None:
        labels[name] = len(code)

    emit(_LD_W_ABS, 4)  # seccomp_data.arch
    for name, (arch, _, _, _) in _ARCHES.items():
        emit(_JEQ, arch, true=name)
    emit(_RET, _ERRNO | errno.ENOSYS)  # another ABI
    for name, (_, denied, clone, clone3) in _ARCHES.items():
        label(name)
        emit(_LD_W_ABS, 0)  # seccomp_data.nr
        if name == "x86_64":
            emit(_JGE, _X32_BIT, true="enosys")
        for number in denied.values():
            emit(_JEQ, number, true="eperm")
        emit(_JEQ, clone3, true="enosys")
        emit(_JEQ, clone, true="clone")
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
        out += struct.pack("=HBBI", op, jt, jf, k)
    return out

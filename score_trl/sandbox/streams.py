"""What crosses between the host and a run without touching the host's disk: pipes read by a capped reader, and
files passed in memory.

A file the program can write to is a file it can grow: `fallocate(FALLOC_FL_KEEP_SIZE)` on an output file of the
host's allocated gigabytes of its disk without growing the file, so the file-size limit never fired. So the
program's stdout and stderr (and the judge's stderr) are pipes, read here up to a byte cap; the files it needs are
`memfd`s that bwrap copies into its own tmpfs (`--ro-bind-data`), and its arguments to bwrap come the same way
(`--args`), so that they show in no process's command line. `Pipes` holds a call's own pipe ends (the judge's).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading


__all__ = ["Drain", "Pipes", "memory_file"]


def memory_file(data: bytes, name: str) -> int:
    """A descriptor of an unnamed in-memory file holding `data`, positioned at its start. Close-on-exec: it reaches a
    child only through `pass_fds`, and bwrap closes it once it has copied it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


class Drain:
    """The host's ends of a run's streams, served by one thread: each output is read up to `limit` bytes, then the
    host closes its end, so the program's next write fails with EPIPE (as the file-size limit stopped it when its
    output was a file). The program never blocks on a full pipe and nothing it writes is kept past the cap. `feed`
    writes the program's stdin the same way, without blocking the caller."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data: dict[int, bytearray] = {}
        self._stdin: tuple[int, memoryview] | None = None
        self._open: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pipe(self) -> tuple[int, int]:
        """A new output pipe: (its key for `text`, its write end for the child; the caller closes that end once the
        child holds it)."""
        read, write = os.pipe()
        self.data[read] = bytearray()
        self._open.add(read)
        return read, write

    def feed(self, data: bytes) -> int:
        """A pipe that delivers `data` and then end of file: returns its read end, for the child's stdin."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._stdin = (write, memoryview(data))
        self._open.add(write)
        return read

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="sandbox-streams", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        poller = select.poll()  # not select(): a trainer may hold descriptors numbered past 1024
        for fd in self._open:
            poller.register(fd, select.POLLOUT if self._stdin and fd == self._stdin[0] else select.POLLIN)
        self._feed(poller)
        while self._open and not self._stop.is_set():
            for fd, _ in poller.poll(50):  # wakes to see `_stop` when a writer outlives the run (no cgroup)
                if self._stdin and fd == self._stdin[0]:
                    self._feed(poller)
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                kept = self.data[fd]
                kept += chunk[: self.limit - len(kept)]
                if not chunk or len(kept) >= self.limit:
                    self._close(poller, fd)

    def _feed(self, poller: select.poll) -> None:
        if not self._stdin:
            return
        fd, left = self._stdin
        try:
            while left:
                left = left[os.write(fd, left) :]
        except BlockingIOError:
            self._stdin = (fd, left)
            return
        except OSError as error:  # the program closed its stdin or exited without reading it all
            if error.errno not in (errno.EPIPE, errno.EBADF):
                raise
        self._stdin = None
        self._close(poller, fd)

    def _close(self, poller: select.poll, fd: int) -> None:
        with contextlib.suppress(KeyError):
            poller.unregister(fd)
        self._open.discard(fd)
        os.close(fd)

    def finish(self, grace: float = 1.0) -> None:
        """Wait up to `grace` seconds for every writer to be gone (the run's processes killed), then stop and close
        the host's ends whatever is left (a writer that outlived the run: isolation='rlimits' without a cgroup)."""
        if self._thread is not None:
            self._thread.join(grace)
            self._stop.set()
            self._thread.join()
        for fd in list(self._open):
            # what is already in the pipe is the run's, even when the thread did not get a CPU in time to read it
            if fd in self.data:
                os.set_blocking(fd, False)
                kept = self.data[fd]
                with contextlib.suppress(OSError):
                    while len(kept) < self.limit and (chunk := os.read(fd, 65536)):
                        kept += chunk[: self.limit - len(kept)]
            self._open.discard(fd)
            os.close(fd)

    def text(self, key: int) -> str:
        """What an output pipe carried (up to the cap), decoded."""
        return bytes(self.data[key]).decode("utf-8", errors="replace")


class Pipes:
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

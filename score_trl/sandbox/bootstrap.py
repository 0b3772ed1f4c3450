"""The first code that runs in the sandbox (copied there read-only with the value codec); everything after `_started`
is the model's.

`bootstrap.py JOB`, JOB a marshalled dict (marshal, not json: it costs no import): {"site": what `site` would
set up, "start_fd", "nproc", "mode", "args"}. In mode "run", args = [PROGRAM]: run a program as `python PROGRAM`
would. In mode "serve", args = [SETUP, SOLUTION, REQUEST_FD, RESPONSE_FD, LIMIT]: run the setup code and the
solution, then answer the judge's requests (the value of a name, a call of a function) with values from `wire` until
the judge hangs up. The judge runs the tests in its own process outside the sandbox: nothing here decides a verdict.
The arguments are in a file rather than on the command line so that no host path shows in /proc/PID/cmdline.
"""

import builtins
import marshal
import os
import resource
import sys


def _started(start_fd: int, nproc: int) -> None:
    # Inside the user namespace RLIMIT_NPROC counts this sandbox's processes only (see limits.py); 0: a cgroup does.
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.write(start_fd, b"1")
    os.close(start_fd)


def _run(program: str) -> None:
    import runpy

    runpy.run_path(program, run_name="__main__")


def _error_name(error: BaseException) -> str:
    # Only builtin exception types are named back; the judge raises its own builtin of that name.
    kind = type(error)
    return kind.__name__ if getattr(builtins, kind.__name__, None) is kind else "Exception"


def _serve(setup: str, solution: str, request_fd: int, response_fd: int, limit: int) -> None:
    import wire

    namespace = {"__name__": "solution", "__builtins__": builtins}
    from_setup = {}
    try:
        for path in (setup, solution):
            with open(path) as f:
                code = compile(f.read(), "solution" if path == solution else "test_setup", "exec")
            exec(code, namespace)
            if path == setup:
                from_setup = dict(namespace)
    except BaseException as error:  # noqa: B036 - the solution's SystemExit too: it did not load
        wire.send(response_fd, ["load_error", _error_name(error)])
        return
    wire.send(response_fd, ["ready"])
    while True:
        try:
            request = wire.receive(request_fd, limit)
        except EOFError:
            return
        op, name = request[0], request[1]
        own_only = op == "resolve" and request[2]
        if name not in namespace or (own_only and from_setup.get(name, namespace) is namespace[name]):
            wire.send(response_fd, ["missing"])
            continue
        target = namespace[name]
        if op == "resolve":
            if type(target) is type(sys):
                wire.send(response_fd, ["module", target.__name__])
            elif callable(target):
                wire.send(response_fd, ["callable"])
            else:
                _reply(response_fd, target)
            continue
        try:
            args, kwargs = wire.decode(request[2]), wire.decode(request[3])
            result = target(*args, **kwargs)
        except BaseException as error:  # noqa: B036 - reported to the tests as the call's exception
            wire.send(response_fd, ["raise", _error_name(error), str(error)[:200]])
            continue
        _reply(response_fd, result)


def _reply(fd: int, value) -> None:
    import wire

    try:
        encoded = wire.encode(value)
    except (wire.WireError, ValueError, RecursionError) as error:  # ValueError: an int too long for str()
        wire.send(fd, ["opaque", str(error)[:200]])
        return
    wire.send(fd, ["value", encoded])


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        job = marshal.load(f)
    site, args = job["site"], job["args"]
    # Run with -S: site-packages and a virtualenv's prefix as `site` would have set them (without running .pth files)
    sys.path.extend(site["path"])
    sys.prefix, sys.exec_prefix = site["prefix"] or sys.prefix, site["exec_prefix"] or sys.exec_prefix
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _started(job["start_fd"], job["nproc"])
    if job["mode"] == "run":
        sys.argv[:] = [args[0]]
        sys.path.insert(0, os.path.dirname(args[0]))  # as `python program.py` puts the program's directory first
        _run(args[0])
    else:
        setup, solution, request_fd, response_fd, limit = args
        _serve(setup, solution, int(request_fd), int(response_fd), int(limit))


if __name__ == "__main__":
    main()

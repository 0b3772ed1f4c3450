"""The trusted test runner: runs a problem's tests in its own process, outside the sandbox, against the candidate.

`python -I -S judge_main.py RESPONSE_FD REQUEST_FD VERDICT_FD LIMIT`, with {"site", "setup", "tests", "entry_point",
"names", "error"} marshalled on stdin (site: what `site` would have set up, `isolation.site_setup`; names: what the
tests use but neither they nor the setup define, `names.free_names`, or None and why in error when they do not
compile). Those names (the function under test; for HumanEval the entry point, even where the setup code defines a
stub of it) are resolved in the candidate: a function becomes a proxy whose calls send the arguments across and
decode the result with `wire`, a standard-library module is imported here, plain data is decoded. The verdict goes
to VERDICT_FD, which the candidate cannot reach, marshalled: {"passed": True | False | None, "why"}. None means
"cannot judge": a test passed a value that cannot cross (a lambda, an instance of a setup class).

Standard library only, run by path: it must work with any interpreter the sandbox is configured with. It imports as
little as it can (marshal, not json; no ast), since its start is paid once per program scored.
"""

import builtins
import marshal
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402


class _Candidate:
    def __init__(self, response_fd: int, request_fd: int, limit: int):
        self.response_fd, self.request_fd, self.limit = response_fd, request_fd, limit
        self.uncrossable = None  # why a test's own value could not be sent: the verdict is then "cannot judge"

    def ask(self, request: list) -> list:
        try:
            wire.send(self.request_fd, request)
            reply = wire.receive(self.response_fd, self.limit)
        except (EOFError, OSError):
            raise RuntimeError("the candidate program exited") from None
        if type(reply) is not list or not reply or type(reply[0]) is not str:
            raise RuntimeError("the candidate program broke the protocol")
        return reply

    def call(self, name: str, args: tuple, kwargs: dict):
        try:
            payload = [wire.encode(args), wire.encode(kwargs)]
        except (wire.WireError, ValueError, RecursionError) as error:
            self.uncrossable = f"a test passes {name}() a value that cannot cross the sandbox boundary ({error})"
            raise
        reply = self.ask(["call", name, *payload])
        return self.value(reply, f"{name}()")

    def value(self, reply: list, what: str):
        if reply[0] == "value" and len(reply) == 2:
            return wire.decode(reply[1])
        if reply[0] == "raise" and len(reply) == 3:
            kind = getattr(builtins, str(reply[1]), None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = Exception
            if issubclass(kind, (StopIteration, StopAsyncIteration)):
                # Raised through map(), filter(), zip() or next(it, default), it would end the test's iteration
                # early and pass it: as PEP 479 does for generators, it reaches the test as an ordinary error.
                kind = RuntimeError
            raise kind(f"{what} raised {reply[1]}: {reply[2]}")
        if reply[0] == "missing":
            raise NameError(f"the solution does not define {what}")
        raise TypeError(f"{what} returned something that is not builtin data")


class _Proxy:
    """Stands for a function of the candidate's: calls cross the boundary, results come back as builtin data."""

    def __init__(self, candidate: _Candidate, name: str):
        self._candidate, self.__name__ = candidate, name

    def __call__(self, *args, **kwargs):
        return self._candidate.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<candidate function {self.__name__}>"


def judge(job: dict, candidate: _Candidate) -> dict:
    setup, tests, entry_point, names = job["setup"] or "", job["tests"], job["entry_point"], job["names"]
    if names is None:
        return {"passed": None, "why": f"the tests or the setup code do not compile: {job['error']}"}
    try:
        first = wire.receive(candidate.response_fd, candidate.limit)
    except (EOFError, OSError, wire.WireError):
        return {"passed": False, "why": "the candidate program exited before it was ready"}
    if first != ["ready"]:
        return {"passed": False, "why": f"the solution did not load: {str(first)[:200]}"}
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(setup, "test_setup", "exec"), namespace)
        # What the setup code defined is the judge's own (also names it binds at run time, `from math import *`),
        # except the function under test, which the setup may only declare (HumanEval's prompt).
        names = {name for name in names if name not in namespace}
        if entry_point:
            names.add(entry_point)
        for name in sorted(names):
            # the entry point must be the program's own, not the setup's stub run in its process before it
            reply = candidate.ask(["resolve", name, name == entry_point])
            if reply[0] == "callable":
                namespace[name] = _Proxy(candidate, name)
            elif reply[0] == "module" and len(reply) == 2 and reply[1] == name and name in sys.stdlib_module_names:
                # only a standard-library module that the tests name as itself (`math` for `math.isclose`)
                namespace[name] = __import__(name)
            elif reply[0] == "value":
                namespace[name] = candidate.value(reply, name)
            else:  # the program does not define it: neither may the setup's stand-in
                namespace.pop(name, None)
        exec(compile(tests, "tests", "exec"), namespace)
        if entry_point:
            namespace["check"](namespace[entry_point])
    except BaseException as error:  # noqa: B036 - a failing test, whatever it raised, is a failed verdict
        if candidate.uncrossable:
            return {"passed": None, "why": candidate.uncrossable}
        verdict = {"passed": False, "why": f"{type(error).__name__}: {str(error)[:300]}"}
        # For feedback turns: where in the (trusted) tests it failed and the error's builtin name, nothing the
        # program wrote (its exception messages and its text stay out: the next prompt must not be the policy's).
        tb, line = error.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "tests":
                line = tb.tb_lineno
            tb = tb.tb_next
        builtin = getattr(builtins, type(error).__name__, None) is type(error)
        verdict.update(line=line, error=type(error).__name__ if builtin else "Exception")
        return verdict
    if candidate.uncrossable:  # a test that caught the crossing error must not pass on it
        return {"passed": None, "why": candidate.uncrossable}
    return {"passed": True, "why": ""}


def main() -> None:
    response_fd, request_fd, verdict_fd, limit = map(int, sys.argv[1:5])
    job = marshal.loads(sys.stdin.buffer.read())
    sys.path.extend(job["site"]["path"])  # run with -S: site-packages as `site` adds them, for the tests
    # The tests' own prints must not mix with the verdict, which has a descriptor of its own.
    os.dup2(2, 1)
    try:
        verdict = judge(job, _Candidate(response_fd, request_fd, limit))
    except BaseException as error:  # noqa: B036 - whatever the program sent, the judge answers with a verdict
        verdict = {"passed": False, "why": f"the test runner failed on the program's input: {error!r}"[:500]}
    os.write(verdict_fd, marshal.dumps(verdict, 4))  # version 4: read by any Python 3 the host may run


if __name__ == "__main__":
    main()

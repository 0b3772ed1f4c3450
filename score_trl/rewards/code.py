"""Code verifier: the program in a completion, run against a problem's tests in the sandbox.

Two test formats are accepted, matching the data sets users bring:

- MBPP: `test_list` (assert statements, one string each) and optional `test_setup_code`;
- HumanEval: `test` (source defining `check(candidate)`) and `entry_point` (the function to pass to it).

A program scores 1.0 only if every test ran and passed: the harness prints a one-time token after the last test, and
the token is read from stdin and dropped from the program's reach before the model's code runs. A program that exits
early with status 0 (`sys.exit(0)`, `os._exit(0)`, an `atexit` hook) therefore scores 0.0.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .sandbox import SandboxConfig, SandboxError, run_python


__all__ = ["build_test_program", "extract_code", "verify_code", "verify_code_batch"]

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)

# The harness keeps the token in a closure and writes it with a reference to os.write taken before the model's code
# runs, so that neither a rebinding of `print`/`os.write` nor a read of the program's source reveals or forges it.
_HARNESS = """\
import os as _os, sys as _sys
def _make_reporter(_write=_os.write, _token=_sys.stdin.readline().strip()):
    def _report():
        _write(1, ("\\n" + _token + "\\n").encode())
    return _report
_report = _make_reporter()
_sys.stdin.close()
_ns = {{"__name__": "solution"}}
exec(compile({setup!r}, "test_setup", "exec"), _ns)
exec(compile({solution!r}, "solution", "exec"), _ns)
exec(compile({tests!r}, "tests", "exec"), _ns)
{check}
_report()
"""


def extract_code(completion: str) -> str:
    """The program in a completion: the last fenced code block if any (an unclosed one runs to the end), else the
    whole text."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def build_test_program(
    solution: str,
    test_list: Sequence[str] | None = None,
    test_setup_code: str = "",
    test: str | None = None,
    entry_point: str | None = None,
) -> str:
    """The harness program that runs `solution` against MBPP-style or HumanEval-style tests."""
    if test_list is not None:
        tests, check = "\n".join(test_list), ""
    elif test is not None and entry_point is not None:
        tests, check = test, f"_ns['check'](_ns[{entry_point!r}])"
    else:
        raise ValueError(
            "No tests given: pass `test_list` (MBPP: assert lines, optional `test_setup_code`) or `test` and "
            "`entry_point` (HumanEval: `check(candidate)`)."
        )
    return _HARNESS.format(setup=test_setup_code or "", solution=solution, tests=tests, check=check)


def verify_code(
    completion: str,
    test_list: Sequence[str] | None = None,
    test_setup_code: str = "",
    test: str | None = None,
    entry_point: str | None = None,
    config: SandboxConfig | None = None,
) -> float | None:
    """1.0 if the program in `completion` passes every test, else 0.0 (syntax error, failure, crash, timeout).

    When the sandbox itself failed and the program never ran, that is not the model's failure: None ("cannot judge",
    with a warning) if the interpreter only did not start in time on a loaded machine, else `SandboxError` is raised.
    """
    if isinstance(test_list, str):  # a JSON-encoded column
        test_list = json.loads(test_list)
    program = build_test_program(extract_code(completion), test_list, test_setup_code, test, entry_point)
    token = secrets.token_hex(16)
    try:
        result = run_python(program, config, stdin=token + "\n")
    except SandboxError as error:
        if not error.transient:
            raise
        logger.warning("Not scored: %s", error)
        return None
    passed = not result.timed_out and result.returncode == 0 and token in result.stdout.splitlines()
    return 1.0 if passed else 0.0


def verify_code_batch(
    completions: Sequence[str],
    tests: Sequence[dict],
    config: SandboxConfig | None = None,
    max_workers: int = 4,
) -> list[float | None]:
    """`verify_code` over many programs, `max_workers` sandboxes at a time (each is its own process)."""
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(verify_code, c, **t, config=config) for c, t in zip(completions, tests, strict=True)]
        return [f.result() for f in futures]

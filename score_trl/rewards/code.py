"""Code verifier: the program in a completion, run against a problem's tests through the sandbox's judge.

Two test formats are accepted, matching the data sets users bring:

- MBPP: `test_list` (assert statements, one string each) and optional `test_setup_code`;
- HumanEval: `test` (source defining `check(candidate)`) and `entry_point` (the function to pass to it), with
  optional `test_setup_code` (the problem's prompt: its helper functions are then the trusted ones, not the model's).

The program runs in the sandbox; the tests run in a separate judge process outside it and see the program's
functions only as proxies whose results cross back as builtin data (`score_trl.sandbox`). A program scores 1.0 only
if the judge saw every test pass. Nothing the program does in its own process (exiting early, rebinding builtins,
returning an object whose `__eq__` is always true, finding a token) reaches the verdict.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..sandbox import SandboxConfig, SandboxError, run_tests
from ..sandbox.isolation import warn_unisolated


__all__ = ["code_tests", "extract_code", "verify_code", "verify_code_batch"]

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The program in a completion: the last fenced code block if any (an unclosed one runs to the end), else the
    whole text."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def code_tests(row: dict) -> tuple[str, str, str | None]:
    """(tests source, setup code, entry point) of a problem's row: MBPP's `test_list` (+ `test_setup_code`) or
    HumanEval's `test` and `entry_point`."""
    test_list, entry_point = row.get("test_list"), row.get("entry_point")
    if isinstance(test_list, str):  # a JSON-encoded column
        test_list = json.loads(test_list)
    if test_list is not None:
        tests, entry_point = "\n".join(test_list), None
    elif row.get("test") is not None and entry_point is not None:
        tests = row["test"]
    else:
        raise ValueError(
            "No tests given: pass `test_list` (MBPP: assert lines, optional `test_setup_code`) or `test` and "
            "`entry_point` (HumanEval: `check(candidate)`)."
        )
    return tests, row.get("test_setup_code") or "", entry_point


def verify_code(
    completion: str,
    test_list: Sequence[str] | None = None,
    test_setup_code: str = "",
    test: str | None = None,
    entry_point: str | None = None,
    config: SandboxConfig | None = None,
) -> float | None:
    """1.0 if the program in `completion` passes every test, else 0.0 (syntax error, failure, crash, timeout).

    None ("cannot judge", with a warning) when the tests pass the program a value that cannot cross the sandbox's
    boundary (docs/rewards.md), or when the interpreter only did not start in time on a loaded machine. Any other
    failure of the sandbox itself raises `SandboxError`: it is never the model's failure.
    """
    tests, test_setup_code, entry_point = code_tests(
        {"test_list": test_list, "test_setup_code": test_setup_code, "test": test, "entry_point": entry_point}
    )
    try:
        passed, why = run_tests(extract_code(completion), tests, test_setup_code, entry_point, config)
    except SandboxError as error:
        if not error.transient:
            raise
        logger.warning("Not scored: %s", error)
        return None
    if passed is None:
        logger.warning("Not scored: %s", why)
        return None
    return 1.0 if passed else 0.0


def verify_code_batch(
    completions: Sequence[str],
    tests: Sequence[dict],
    config: SandboxConfig | None = None,
    max_workers: int = 4,
) -> list[float | None]:
    """`verify_code` over many programs, `max_workers` sandboxes at a time (each is its own process tree)."""
    if config is not None and config.isolation == "rlimits":
        warn_unisolated()  # on every batch: running model code unisolated must never go unnoticed
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(verify_code, c, **t, config=config) for c, t in zip(completions, tests, strict=True)]
        return [f.result() for f in futures]

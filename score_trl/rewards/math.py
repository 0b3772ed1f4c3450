r"""Math verifier: a final answer in a completion against a gold answer, with `math-verify`, under a hard time limit.

The final answer is the last `\boxed{...}` or the last of the paper's
`Final Answer: The final answer is $...$. I hope it is correct.` in the tail of the completion, whichever comes
later. Scores are 1.0 (equivalent), 0.0 (wrong, no answer, or out of time) or None (the gold answer cannot be
parsed: TRL skips the sample).

math-verify (sympy) can be made to compute for minutes by one answer (`\boxed{9^{9^{9^{9}}}}`), and its own timeouts
use `signal.alarm`, which works only on a main thread, and TRL calls reward functions on its event loop's thread. So
math-verify runs in a worker process (this file, run as a script) on that process's main thread, and the caller
waits for each answer at most `answer_timeout` seconds: past it the worker is killed and restarted, and the answer
scores 0.0. Answers no honest solution writes (nested powers, huge factorials) are not given to sympy at all: they
match only a gold answer written identically. Standard library and math-verify only: the worker runs this file by
path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time


__all__ = [
    "MathVerifier",
    "equivalent_answers",
    "extract_final_answer",
    "last_boxed",
    "verify_math",
    "verify_math_in_process",
]

logger = logging.getLogger(__name__)

# Long completions are clipped before searching: the final answer is at the end, and latex parsing is superlinear.
TAIL_CHARS = 4000
ANSWER_TIMEOUT = 5.0
_START_TIMEOUT = 120.0
_FINAL_ANSWER = re.compile(r"final answer is\s*\$(.+?)\$(?=[\s.,;]|$)", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a `$` that opens or closes math, not an escaped `\$`
_MAX_ANSWER_CHARS = 300
_EXPONENT_DIGITS = 4  # 10^{1000} is an answer; 10^{10000} or a power of a power is sympy computing for minutes
_FACTORIAL = re.compile(r"\d{3,}\s*!|[)}]\s*!|\\(?:operatorname\{)?fact")


def last_boxed(text: str) -> tuple[int, str] | None:
    """Start offset and content of the last balanced `\\boxed{...}` in `text` (the one that closes last), in one
    pass: nested or unclosed boxes cost no rescans."""
    opens = {match.end() - 1: match.start() for match in _BOXED.finditer(text)}
    stack: list[int | None] = []
    found = None
    for i, char in enumerate(text):
        if char == "{":
            stack.append(opens.get(i))
        elif char == "}" and stack:
            start = stack.pop()
            if start is not None:
                found = (start, text[text.index("{", start) + 1 : i])
    return found


def extract_final_answer(completion: str, tail_chars: int = TAIL_CHARS) -> str | None:
    """The last final answer written in `completion` (boxed or the paper's phrase), or None when there is none."""
    text = completion[-tail_chars:]
    candidates = []
    boxed = last_boxed(text)
    if boxed is not None:
        candidates.append(boxed)
    phrases = list(_FINAL_ANSWER.finditer(text))
    if phrases:
        candidates.append((phrases[-1].start(), phrases[-1].group(1)))
    if not candidates:
        return None
    answer = max(candidates)[1].strip()
    return answer or None


def _exponents(answer: str) -> list[str]:
    """What follows each `^` (or `**`): a balanced `{...}` or `(...)` group, else the next token."""
    found = []
    for match in re.finditer(r"\^|\*\*", answer):
        rest = answer[match.end() :].lstrip()
        if rest[:1] in ("{", "("):
            close, depth = {"{": "}", "(": ")"}[rest[0]], 0
            for i, char in enumerate(rest):
                depth += (char == rest[0]) - (char == close)
                if depth == 0:
                    found.append(rest[1:i])
                    break
            else:
                found.append(rest[1:])
        else:
            found.append(re.match(r"[\w.\\]*", rest).group())
    return found


def _absurd(answer: str) -> bool:
    """Answers no honest solution writes and sympy would compute for long: too long, a power of a power, an exponent
    of 4+ digits, a factorial of a 3+ digit number or of an expression."""
    if len(answer) > _MAX_ANSWER_CHARS or _FACTORIAL.search(answer):
        return True
    for exponent in _exponents(answer):
        digits = re.sub(r"\D", "", exponent)
        if "^" in exponent or "**" in exponent or "!" in exponent or len(digits) >= _EXPONENT_DIGITS:
            return True
    return False


# ---- run in the worker process (math-verify imported there only) ----


def _parse_latex(answer: str) -> list:
    from math_verify import parse

    # An escaped dollar (MATH's `\$18.90`, `\$32,\!348`) is a currency sign, not a math delimiter: such an answer
    # still needs wrapping, and math-verify reads `$\$18.90$` as 18.90.
    delimited = "\\boxed" in answer or _MATH_DOLLAR.search(answer) is not None
    return parse(answer if delimited else f"${answer}$", parsing_timeout=5)


_ANSWERS: dict[str, list] = {}


def _parse_answer(answer: str) -> list:
    if answer not in _ANSWERS:
        from math_verify import LatexExtractionConfig, parse

        config = [LatexExtractionConfig(boxed_match_priority=0)]
        if len(_ANSWERS) > 4096:
            _ANSWERS.clear()
        _ANSWERS[answer] = parse(f"\\boxed{{{answer}}}", extraction_config=config, parsing_timeout=5)
    return _ANSWERS[answer]


def verify_math_in_process(completion: str, gold: str, tail_chars: int = TAIL_CHARS) -> float | None:
    """`verify_math` in this process, with only math-verify's own timeouts (main thread only): what the worker runs,
    and the baseline `benchmarks/math_speed.py` measures it against."""
    from math_verify import verify

    gold_parsed = _parse_latex(gold)
    # math-verify falls back to the raw string when latex parsing fails: that is not a usable gold answer.
    if not any(not isinstance(item, str) for item in gold_parsed):
        return None
    answer = extract_final_answer(completion, tail_chars)
    if answer is None:
        return 0.0
    if _absurd(answer):
        return float(answer.strip() == gold.strip())
    answer_parsed = _parse_answer(answer)
    if not answer_parsed:
        return 0.0
    # Order matters: math-verify treats the first argument as the reference.
    return float(verify(gold_parsed, answer_parsed, timeout_seconds=5))


def _equivalent(first: str, second: str) -> bool:
    from math_verify import verify

    if _absurd(first) or _absurd(second):
        return False
    first_parsed, second_parsed = _parse_answer(first), _parse_answer(second)
    if not first_parsed or not second_parsed:
        return False
    return bool(verify(first_parsed, second_parsed, timeout_seconds=5))


def _serve() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401 - imported before the first answer's clock starts

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "ping":
            result = "pong"
        elif request["op"] == "verify":
            result = verify_math_in_process(request["completion"], request["gold"], request["tail_chars"])
        else:
            result = _equivalent(request["first"], request["second"])
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


# ---- the caller's side ----


class MathVerifier:
    """A math-verify worker process with a hard limit per answer. Thread-safe; one request at a time."""

    def __init__(self, answer_timeout: float = ANSWER_TIMEOUT):
        self.answer_timeout = answer_timeout
        self.timeouts = 0  # answers that ran out of time, over this verifier's life
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept for the worker's life, for its errors
            self._proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
            )
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._stderr.close()

    def ask(self, request: dict, timeout: float | None = None, default=0.0):
        """The worker's answer to `request`, or `default` (and a count in `timeouts`) past the time limit. A fresh
        worker's start (importing math-verify) is waited for first and not counted against the answer; a worker that
        cannot start at all is our failure, raised as `RuntimeError`, never scored."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                # the worker's start (importing math-verify, seconds on a loaded machine) is not the answer's time
                self._start()
                try:
                    self._exchange({"op": "ping"}, _START_TIMEOUT)
                except (TimeoutError, BrokenPipeError) as error:
                    self._stderr.seek(0)
                    detail = self._stderr.read().decode(errors="replace").strip()[-1000:]
                    self._kill()
                    raise RuntimeError(
                        f"The math-verify worker ({sys.executable}) could not start (waited up to {_START_TIMEOUT:.0f} s): "
                        f"{detail or 'no error output'}. It needs math-verify importable by that interpreter."
                    ) from error
            limit = min(self.answer_timeout, timeout if timeout is not None else self.answer_timeout)
            try:
                return self._exchange(request, limit)
            except (TimeoutError, BrokenPipeError):
                self.timeouts += 1
                self._kill()
                return default

    def _exchange(self, request: dict, limit: float):
        proc, deadline = self._proc, time.monotonic() + limit
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        poller = select.poll()  # not select(): a trainer may hold descriptors numbered past 1024
        poller.register(proc.stdout, select.POLLIN)
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError
        line = proc.stdout.readline()  # one line per request: it is complete once any of it is readable
        if not line:  # the worker died (out of memory, a crash in sympy): the answer is not scorable
            raise TimeoutError
        return json.loads(line)

    def verify(self, completion: str, gold: str, tail_chars: int = TAIL_CHARS, timeout: float | None = None):
        return self.ask({"op": "verify", "completion": completion[-tail_chars:], "gold": gold, "tail_chars": tail_chars},
                        timeout)  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._kill()


_DEFAULT = MathVerifier()


def verify_math(completion: str, gold: str, tail_chars: int = TAIL_CHARS) -> float | None:
    """Score `completion` against `gold`: 1.0 if its final answer is equivalent, 0.0 if not, if it has none or if
    judging it took longer than the time limit.

    Returns None when `gold` itself cannot be parsed into a math expression, so that a broken label is skipped rather
    than scored.
    """
    return _DEFAULT.verify(completion, str(gold), tail_chars)


def equivalent_answers(first: str, second: str) -> bool:
    r"""Whether two final answers (as `extract_final_answer` returns them) are one answer: equal strings, else
    equivalent by math-verify, so `1/2`, `0.5` and `\frac{1}{2}` are one answer. `first` is math-verify's reference.
    Out of time counts as different.

    Equal strings are checked first and parses are cached: the trainer asks this for every sample of every step.
    """
    if first.strip() == second.strip():
        return True
    return bool(_DEFAULT.ask({"op": "equivalent", "first": first, "second": second}, default=False))


if __name__ == "__main__":
    _serve()

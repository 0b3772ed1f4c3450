r"""Math verifier: a final answer in a completion against a gold answer, with `math-verify`.

The final answer is the last `\boxed{...}` or the last of the paper's
`Final Answer: The final answer is $...$. I hope it is correct.` in the tail of the completion, whichever comes
later. Scores are 1.0 (equivalent), 0.0 (wrong or no answer) or None (the gold answer cannot be parsed: TRL skips the
sample).
"""

from __future__ import annotations

import functools
import logging
import re
import threading

from math_verify import LatexExtractionConfig, parse, verify


__all__ = ["equivalent_answers", "extract_final_answer", "last_boxed", "verify_math"]

# Long completions are clipped before searching: the final answer is at the end, and latex parsing is superlinear.
TAIL_CHARS = 4000
_FINAL_ANSWER = re.compile(r"final answer is\s*\$(.+?)\$(?=[\s.,;]|$)", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a `$` that opens or closes math, not an escaped `\$`


def last_boxed(text: str) -> tuple[int, str] | None:
    """Start offset and content of the last balanced `\\boxed{...}` in `text`."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found = (match.start(), text[start:i])
                    break
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


def _timeouts() -> tuple[int | None, int | None]:
    # math-verify times out with signal.alarm, which only works on the main thread: elsewhere, run without timeouts
    # (the latex is already clipped to the tail) instead of raising.
    if threading.current_thread() is threading.main_thread():
        return 10, 5
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return None, None


def _parse_latex(answer: str, parsing_timeout: int | None) -> list:
    # An escaped dollar (MATH's `\$18.90`, `\$32,\!348`) is a currency sign, not a math delimiter: such an answer
    # still needs wrapping, and math-verify reads `$\$18.90$` as 18.90.
    delimited = "\\boxed" in answer or _MATH_DOLLAR.search(answer) is not None
    return parse(answer if delimited else f"${answer}$", parsing_timeout=parsing_timeout)


@functools.lru_cache(maxsize=4096)
def _parse_answer(answer: str, parsing_timeout: int | None) -> tuple:
    """A final answer parsed by math-verify (a tuple, so that the cached value cannot be changed in place)."""
    boxed = f"\\boxed{{{answer}}}"
    config = [LatexExtractionConfig(boxed_match_priority=0)]
    return tuple(parse(boxed, extraction_config=config, parsing_timeout=parsing_timeout))


def verify_math(completion: str, gold: str, tail_chars: int = TAIL_CHARS) -> float | None:
    """Score `completion` against `gold`: 1.0 if its final answer is equivalent, 0.0 if not or if it has none.

    Returns None when `gold` itself cannot be parsed into a math expression, so that a broken label is skipped rather
    than scored.
    """
    parsing_timeout, verify_timeout = _timeouts()
    gold_parsed = _parse_latex(str(gold), parsing_timeout)
    # math-verify falls back to the raw string when latex parsing fails: that is not a usable gold answer.
    if not any(not isinstance(item, str) for item in gold_parsed):
        return None
    answer = extract_final_answer(completion, tail_chars)
    if answer is None:
        return 0.0
    answer_parsed = _parse_answer(answer, parsing_timeout)
    if not answer_parsed:
        return 0.0
    # Order matters: math-verify treats the first argument as the reference.
    return float(verify(gold_parsed, list(answer_parsed), timeout_seconds=verify_timeout))


def equivalent_answers(first: str, second: str) -> bool:
    r"""Whether two final answers (as `extract_final_answer` returns them) are one answer: equal strings, else
    equivalent by math-verify, so `1/2`, `0.5` and `\frac{1}{2}` are one answer. `first` is math-verify's reference.

    Equal strings are checked first and parses are cached: the trainer asks this for every sample of every step.
    """
    if first.strip() == second.strip():
        return True
    parsing_timeout, verify_timeout = _timeouts()
    first_parsed, second_parsed = _parse_answer(first, parsing_timeout), _parse_answer(second, parsing_timeout)
    if not first_parsed or not second_parsed:
        return False
    return bool(verify(list(first_parsed), list(second_parsed), timeout_seconds=verify_timeout))

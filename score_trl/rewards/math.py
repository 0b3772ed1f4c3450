r"""Math verifier: a final answer in a completion against a gold answer, with `math-verify`.

The final answer is the last `\boxed{...}` or the last of the paper's
`Final Answer: The final answer is $...$. I hope it is correct.` in the tail of the completion, whichever comes
later. Scores are 1.0 (equivalent), 0.0 (wrong or no answer) or None (the gold answer cannot be parsed: TRL skips the
sample).
"""

from __future__ import annotations

import logging
import re
import threading

from math_verify import LatexExtractionConfig, parse, verify


__all__ = ["extract_final_answer", "last_boxed", "verify_math"]

# Long completions are clipped before searching: the final answer is at the end, and latex parsing is superlinear.
TAIL_CHARS = 4000
_FINAL_ANSWER = re.compile(r"final answer is\s*\$(.+?)\$(?=[\s.,;]|$)", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


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
    wrapped = answer if "\\boxed" in answer or "$" in answer else f"${answer}$"
    return parse(wrapped, parsing_timeout=parsing_timeout)


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
    answer_parsed = parse(
        f"\\boxed{{{answer}}}",
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
        parsing_timeout=parsing_timeout,
    )
    if not answer_parsed:
        return 0.0
    # Order matters: math-verify treats the first argument as the reference.
    return float(verify(gold_parsed, answer_parsed, timeout_seconds=verify_timeout))

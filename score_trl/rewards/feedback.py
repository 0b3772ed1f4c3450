"""Feedback functions: what a verifier can tell the model about its attempt, shown before the next one.

A feedback function has the shape of a TRL reward function over one turn, `f(rows, attempts) -> list[str | None]`:
dataset rows (their columns, as the reward reads them) and attempt texts in, one message per attempt out, None when
there is nothing to tell (the attempt is right, or could not be judged). The trainers and evaluation put the message
in front of the turn's instruction (`score_trl.prompts.with_feedback`); with no feedback function the instruction
is the same whatever the attempt: the paper's intrinsic setting.

Feedback is written from the verifier's side, never by echoing the attempt: the math feedback repeats at most a
short, one-line final answer (which the model already wrote); the code feedback shows the failing test's own line
(the data set's) and the error's builtin name from the trusted judge, never the program's output or messages, so
nothing the policy emits can steer the next prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..sandbox import SandboxConfig, SandboxError, first_failure
from .code import code_tests, extract_code
from .math import extract_final_answer, verify_math


__all__ = ["FeedbackFunc", "code_feedback", "make_code_feedback", "make_math_feedback", "math_feedback"]

FeedbackFunc = Callable[[Sequence[dict], Sequence[str]], list[str | None]]


def _one_line(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def make_math_feedback(
    wrong: str = "Your final answer {answer} is wrong.",
    unreadable: str = "Your solution does not state a final answer that can be read.",
    answer_chars: int = 40,
) -> FeedbackFunc:
    r"""Oracle feedback for math: `wrong` (with `{answer}`, the attempt's final answer on one line, cut at
    `answer_chars`) when the verifier scores the attempt 0 against the row's `answer`, `unreadable` when the attempt
    states no final answer (`\boxed{}` or "The final answer is $...$"), None when it is right or cannot be judged."""
    if "{answer}" not in wrong and "{" in wrong:
        raise ValueError(f"wrong={wrong!r}: its only field can be `{{answer}}`.")

    def feedback(rows: Sequence[dict], attempts: Sequence[str]) -> list[str | None]:
        messages: list[str | None] = []
        for row, attempt in zip(rows, attempts, strict=True):
            answer = extract_final_answer(attempt)
            if answer is None:
                messages.append(unreadable)
                continue
            score = verify_math(attempt, str(row["answer"]))
            told = score is not None and score < 1.0
            # a message without the field is kept as given (an `InsteadOfInstruction` stays one)
            message = wrong.format(answer=_one_line(answer, answer_chars)) if "{answer}" in wrong else wrong
            messages.append(message if told else None)
        return messages

    return feedback


math_feedback = make_math_feedback()


def make_code_feedback(
    config: SandboxConfig | None = None, max_workers: int = 4, test_chars: int = 300
) -> FeedbackFunc:
    """Feedback for code from the trusted test runner (`score_trl.sandbox.first_failure`): "Your program failed this
    test: `assert f(2) == 4` (AssertionError)." with the failing test's line cut at `test_chars`; "Your program ran
    out of time.", "Your program did not load (it does not compile, or it raised while it was loaded)." or "Your
    program failed before its tests ran (NameError)." otherwise; None when it passed or
    cannot be judged. Each attempt runs in the sandbox once more than the reward runs it."""

    def feedback_for(row: dict, attempt: str) -> str | None:
        tests, setup, entry_point = code_tests(row)
        try:
            failure = first_failure(extract_code(attempt), tests, setup, entry_point, config)
        except SandboxError as error:  # as the reward: a start that timed out on a loaded machine is not judged
            if not error.transient:
                raise
            return None
        if failure is None:
            return None
        if failure.error == "timed out":
            return "Your program ran out of time."
        if failure.error == "did not load":
            return "Your program did not load (it does not compile, or it raised while it was loaded)."
        if failure.test is None:
            return f"Your program failed before its tests ran ({failure.error})."
        return f"Your program failed this test: `{_one_line(failure.test, test_chars)}` ({failure.error})."

    def feedback(rows: Sequence[dict], attempts: Sequence[str]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(feedback_for, rows, attempts))

    return feedback


code_feedback = make_code_feedback()

"""TRL-shaped reward functions over the math and code verifiers, looked up by name in `REWARD_FUNCS`."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence

from ..sandbox import SandboxConfig
from .code import verify_code_batch
from .math import MathVerifier, equivalent_answers, extract_final_answer


logger = logging.getLogger(__name__)


def completion_text(completion: str | list[dict]) -> str:
    """The text of a completion, plain (`str`) or conversational (a list of messages; the last one is the answer)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, list):  # typed content blocks
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content


def math_reward(prompts: list, completions: list, answer: Sequence[str], **kwargs) -> list[float | None]:
    r"""1.0 when a completion's final answer (`\boxed{}` or the paper's "The final answer is $...$") matches the
    dataset column `answer`, 0.0 when it does not, has none or runs out of time, None when the gold answer cannot be
    parsed or the batch's time ran out before it was judged. Time limits: 5 s per answer, 60 s per batch
    (`make_math_reward` sets others)."""
    return _default_math_reward(prompts, completions, answer, **kwargs)


def make_math_reward(answer_timeout: float = 5.0, batch_timeout: float = 60.0) -> Callable[..., list[float | None]]:
    """A `math_reward` with its own time limits: `answer_timeout` seconds for one answer (math-verify runs in a worker
    process that is killed past it) and `batch_timeout` for a whole call. An answer that runs out of its time scores
    0.0; answers left untried when the batch's time is spent score None (TRL skips them: another answer spent the
    time). Both counts are logged (a warning, and `math_reward/out_of_time`, `math_reward/not_judged` through TRL's
    `log_metric`)."""
    if answer_timeout <= 0 or batch_timeout <= 0:
        raise ValueError(f"answer_timeout and batch_timeout must be positive, got {answer_timeout}, {batch_timeout}.")
    verifier = MathVerifier(answer_timeout)

    def reward(prompts: list, completions: list, answer: Sequence[str], **kwargs) -> list[float | None]:
        start, scores, out_of_time, untried = time.monotonic(), [], 0, 0
        for completion, gold in zip(completions, answer, strict=True):
            left = batch_timeout - (time.monotonic() - start)
            if left <= 0:  # never judged: another answer spent the batch's time, so "cannot judge", not wrong
                scores.append(None)
                untried += 1
                continue
            before = verifier.timeouts
            scores.append(verifier.verify(completion_text(completion), str(gold), timeout=left))
            out_of_time += verifier.timeouts - before
        if out_of_time or untried:
            logger.warning(
                "math_reward: %d of %d answers ran out of time (scored 0.0), %d were not judged (None)",
                out_of_time, len(scores), untried,
            )  # fmt: skip
        if callable(kwargs.get("log_metric")):
            kwargs["log_metric"]("math_reward/out_of_time", float(out_of_time))
            kwargs["log_metric"]("math_reward/not_judged", float(untried))
        return scores

    return functools.update_wrapper(reward, math_reward)


_default_math_reward = make_math_reward()


def _test_columns(kwargs: dict, n: int) -> list[dict]:
    if kwargs.get("test_list") is not None:
        setup = kwargs.get("test_setup_code") or [""] * n
        return [{"test_list": t, "test_setup_code": s or ""} for t, s in zip(kwargs["test_list"], setup, strict=True)]
    if kwargs.get("test") is not None and kwargs.get("entry_point") is not None:
        setup = kwargs.get("test_setup_code") or [""] * n
        return [
            {"test": t, "entry_point": e, "test_setup_code": s or ""}
            for t, e, s in zip(kwargs["test"], kwargs["entry_point"], setup, strict=True)
        ]
    raise ValueError(
        "code_reward needs test columns in the dataset: `test_list` (MBPP: assert lines, optional "
        "`test_setup_code`) or `test` and `entry_point` (HumanEval). Found columns: "
        f"{sorted(k for k in kwargs if not k.startswith(('trainer_state', 'log_')))}."
    )


def make_code_reward(config: SandboxConfig | None = None, max_workers: int = 4) -> Callable[..., list[float | None]]:
    """A `code_reward` with its own sandbox limits and pool size."""

    def reward(prompts: list, completions: list, **kwargs) -> list[float | None]:
        tests = _test_columns(kwargs, len(completions))
        texts = [completion_text(c) for c in completions]
        return verify_code_batch(texts, tests, config=config, max_workers=max_workers)

    return functools.update_wrapper(reward, code_reward)


def code_reward(prompts: list, completions: list, **kwargs) -> list[float | None]:
    """1.0 when the program in a completion passes every test of its problem (MBPP `test_list` [+
    `test_setup_code`], or HumanEval `test` + `entry_point`), run in the sandbox with default limits; else 0.0.
    A failure of the sandbox itself raises `SandboxError` instead of scoring (docs/rewards.md)."""
    return make_code_reward()(prompts, completions, **kwargs)


REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {"math": math_reward, "code": code_reward}

# How each verifier's final answers are found and compared, for the answer-changed metrics
# (`score_trl.metrics.answer_changed`); code has no final answer to extract: whole texts are compared.
ANSWER_FORMATS: dict[str, dict[str, Callable | None]] = {
    "math": {"extract_answer": extract_final_answer, "same_answer": equivalent_answers},
    "code": {"extract_answer": None},
}

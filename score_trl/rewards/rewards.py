"""TRL-shaped reward functions over the math and code verifiers, looked up by name in `REWARD_FUNCS`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from .code import verify_code_batch
from .math import equivalent_answers, extract_final_answer, verify_math
from .sandbox import SandboxConfig


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
    dataset column `answer`, 0.0 when it does not or has none, None when the gold answer cannot be parsed."""
    return [verify_math(completion_text(c), str(gold)) for c, gold in zip(completions, answer, strict=True)]


def _test_columns(kwargs: dict, n: int) -> list[dict]:
    if kwargs.get("test_list") is not None:
        setup = kwargs.get("test_setup_code") or [""] * n
        return [{"test_list": t, "test_setup_code": s or ""} for t, s in zip(kwargs["test_list"], setup, strict=True)]
    if kwargs.get("test") is not None and kwargs.get("entry_point") is not None:
        return [{"test": t, "entry_point": e} for t, e in zip(kwargs["test"], kwargs["entry_point"], strict=True)]
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

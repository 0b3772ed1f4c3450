"""Verifiers (pure functions: `math`, `code`) and the TRL-shaped reward functions that wrap them (`trl_rewards`).

A TRL reward function is `f(prompts, completions, **kwargs) -> list[float | None]`, dataset columns arriving as
keyword arguments and None meaning "cannot judge" (TRL skips the sample). The code verifier runs programs in
`score_trl.sandbox`, whose `SandboxConfig` sets its limits.
"""

from .code import extract_code, verify_code, verify_code_batch
from .math import MathVerifier, equivalent_answers, extract_final_answer, verify_math
from .trl_rewards import (
    ANSWER_FORMATS,
    REWARD_FUNCS,
    code_reward,
    completion_text,
    make_code_reward,
    make_math_reward,
    math_reward,
)


__all__ = [
    "ANSWER_FORMATS",
    "MathVerifier",
    "REWARD_FUNCS",
    "code_reward",
    "completion_text",
    "equivalent_answers",
    "extract_code",
    "extract_final_answer",
    "make_code_reward",
    "make_math_reward",
    "math_reward",
    "verify_code",
    "verify_code_batch",
    "verify_math",
]

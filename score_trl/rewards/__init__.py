"""Verifiers (pure functions) and the TRL-shaped reward functions that wrap them.

A TRL reward function is `f(prompts, completions, **kwargs) -> list[float | None]`, dataset columns arriving as
keyword arguments and None meaning "cannot judge" (TRL skips the sample).
"""

from ..sandbox import SandboxConfig, SandboxError, SandboxResult, run_python
from .code import extract_code, verify_code, verify_code_batch
from .math import MathVerifier, equivalent_answers, extract_final_answer, verify_math
from .rewards import (
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
    "SandboxConfig",
    "SandboxError",
    "SandboxResult",
    "code_reward",
    "completion_text",
    "equivalent_answers",
    "extract_code",
    "extract_final_answer",
    "make_code_reward",
    "make_math_reward",
    "math_reward",
    "run_python",
    "verify_code",
    "verify_code_batch",
    "verify_math",
]

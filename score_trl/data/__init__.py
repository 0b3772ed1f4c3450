"""Loaders that bring data sets to one row format (`rows`): MATH-style sets, MBPP and HumanEval, and the generated
arithmetic word problems. The embedded task generates its own problems (`score_trl.embedded`)."""

from __future__ import annotations

from .arithmetic import split_arithmetic
from .code import humaneval_rows, load_humaneval, load_mbpp, mbpp_rows
from .math import load_math, to_math_rows
from .rows import in_row_format, load_set, with_ids


__all__ = [
    "humaneval_rows",
    "in_row_format",
    "load_humaneval",
    "load_math",
    "load_mbpp",
    "load_set",
    "mbpp_rows",
    "split_arithmetic",
    "to_math_rows",
    "with_ids",
]

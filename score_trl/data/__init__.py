"""Data: the embedded offline task, and loaders that bring MATH and code sets to one row format."""

from __future__ import annotations

from .embedded import EMBEDDED_INSTRUCTION, build_tokenizer, make_problems, split_problems
from .embedded_model import EmbeddedRecipe, build_base_model, cached_model, pretrain
from .math import load_math


__all__ = [
    "EMBEDDED_INSTRUCTION",
    "EmbeddedRecipe",
    "build_base_model",
    "build_tokenizer",
    "cached_model",
    "load_math",
    "make_problems",
    "pretrain",
    "split_problems",
]

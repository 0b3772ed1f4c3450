"""Data: the embedded offline task, and loaders that bring MATH and code sets to one row format."""

from __future__ import annotations

from datasets import Dataset

from .embedded import EMBEDDED_INSTRUCTION, build_tokenizer, split_problems
from .embedded_model import EmbeddedRecipe, build_base_model
from .math import load_math


__all__ = [
    "EMBEDDED_INSTRUCTION",
    "EmbeddedRecipe",
    "build_base_model",
    "build_tokenizer",
    "load_math",
    "load_math_task",
    "split_problems",
]


def load_math_task(
    dataset_name: str = "embedded",
    dataset_config: str | None = None,
    train_split: str = "train",
    eval_dataset_name: str = "HuggingFaceH4/MATH-500",
    eval_split: str = "test",
) -> tuple[Dataset, list[dict]]:
    """(training set, evaluation rows): the embedded task's 160 RL problems and 40 held-out ones, or a MATH-style
    training set with a MATH-style evaluation set."""
    if dataset_name == "embedded":
        train, held_out = split_problems()
        return Dataset.from_list(train), held_out
    train = load_math(dataset_name, train_split, dataset_config)
    return train, load_math(eval_dataset_name, eval_split).to_list()

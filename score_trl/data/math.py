r"""MATH loaders: bring MATH-style data sets to the row format the trainers and evaluation read.

Rows: `prompt` (the paper's system instruction and the problem, as messages), `answer` (gold final answer) and
`id`. When a set has no `answer` column, the answer is the last `\boxed{}` of its `solution`; rows whose gold answer
cannot be parsed are dropped, and how many is reported. A set already in the row format is read as it is.
"""

from __future__ import annotations

import logging

from datasets import Dataset, concatenate_datasets, get_dataset_config_names, load_dataset

from ..prompts import MATH_SYSTEM_PROMPT, first_turn_messages
from ..rewards.math import last_boxed, verify_math
from .rows import ROW_FILE_SUFFIXES, load_set


__all__ = ["load_math", "to_math_rows"]

logger = logging.getLogger(__name__)


def _gold(row: dict) -> str | None:
    if row.get("answer") not in (None, ""):
        return str(row["answer"])
    boxed = last_boxed(row.get("solution") or "")
    return boxed[1] if boxed else None


def to_math_rows(dataset: Dataset, system_prompt: str | None = MATH_SYSTEM_PROMPT) -> Dataset:
    """Map a MATH-style set (`problem` + `answer` or `solution`) to trainer rows, dropping unusable gold answers."""
    if "problem" not in dataset.column_names:
        raise ValueError(f"A MATH-style set needs a `problem` column (columns: {dataset.column_names}).")

    def convert(row: dict, index: int) -> dict:
        gold = _gold(row)
        usable = gold is not None and verify_math(f"\\boxed{{{gold}}}", gold) is not None
        return {
            "prompt": first_turn_messages(row["problem"], system_prompt),
            "answer": gold or "",
            "id": str(row.get("unique_id") or index),
            "_usable": usable,
        }

    rows = dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)
    kept = rows.filter(lambda row: row["_usable"]).remove_columns("_usable")
    skipped = len(rows) - len(kept)
    if skipped:
        logger.warning(
            "Dropped %d of %d rows whose gold answer is missing or cannot be parsed by math-verify.",
            skipped,
            len(rows),
        )
    return kept


def load_math(name: str, split: str, config: str | None = None, system_prompt: str | None = MATH_SYSTEM_PROMPT):
    """Load a MATH-style set from the Hub, a local directory or a JSON-lines file (all subject configs of a
    multi-config set such as `EleutherAI/hendrycks_math` when `config` is None) and convert it with `to_math_rows`,
    unless its prompts are written already."""
    try:
        if name.endswith(ROW_FILE_SUFFIXES) or config is not None:
            dataset = load_set(name, split, config)
        else:
            configs = get_dataset_config_names(name)
            parts = [load_dataset(name, c, split=split) for c in configs] if len(configs) > 1 else None
            dataset = concatenate_datasets(parts) if parts else load_dataset(name, split=split)
    except (ConnectionError, OSError, FileNotFoundError) as error:  # offline, or a typo in the id
        raise RuntimeError(
            f"Could not load the data set {name!r} ({error.__class__.__name__}: {error}). Without network access, "
            "run the embedded default instead (no --dataset_name), or pass a local path."
        ) from error
    # a set with its prompts already written (the row format; ids by position where it has none) is read as it is
    return dataset if "prompt" in dataset.column_names else to_math_rows(dataset, system_prompt)

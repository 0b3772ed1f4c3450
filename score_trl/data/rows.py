"""The row format every loader brings a data set to (a `prompt`, the verifier's columns, an `id`), and what the
loaders share: reading a set from the Hub, a local directory or a JSON-lines file, and naming rows."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable

from datasets import Dataset, load_dataset


__all__ = ["in_row_format", "load_set", "with_ids"]

ROW_FILE_SUFFIXES = (".jsonl", ".json")


def with_ids(rows: Iterable[dict]) -> list[dict]:
    """Each row with its `id` as a string: its own, else its position. Traces, fixed first attempts and the
    standard error over problems all find a problem by it."""
    return [{**row, "id": str(row.get("id", i))} for i, row in enumerate(rows)]


def in_row_format(columns: Collection[str]) -> bool:
    """Whether a set is in the row format already, which loaders read as it is: a `prompt` and an `id` (HumanEval's
    own `prompt` is the code to complete, and it has no `id`)."""
    return "prompt" in columns and "id" in columns


def load_set(name: str, split: str, config: str | None = None) -> Dataset:
    """A data set from the Hub or a local directory (`datasets.load_dataset`), or a JSON-lines file (`.jsonl` or
    `.json`, one row per line: the file is the split)."""
    if name.endswith(ROW_FILE_SUFFIXES):
        with open(name) as f:
            return Dataset.from_list([json.loads(line) for line in f if line.strip()])
    return load_dataset(name, config, split=split)

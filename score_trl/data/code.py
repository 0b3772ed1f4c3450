"""Code loaders: MBPP (training) and HumanEval (evaluation) in the row format `code_reward` reads.

MBPP rows keep `test_list` and `test_setup_code`; HumanEval rows keep `test` and `entry_point`, and
the problem's own code as `test_setup_code`. Both get a `prompt`
(the task as a user message) and an `id`. A set already in the row format is read as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from datasets import Dataset

from .rows import in_row_format, load_set


__all__ = ["humaneval_rows", "load_humaneval", "load_mbpp", "mbpp_rows"]


def mbpp_rows(dataset: Dataset) -> Dataset:
    """MBPP (`text`, `test_list`, `test_setup_code`, `task_id`) to trainer rows."""

    def convert(row: dict) -> dict:
        tests = "\n".join(row["test_list"])
        content = f"{row['text']}\nYour code should pass these tests:\n\n{tests}"
        return {"prompt": [{"role": "user", "content": content}], "id": str(row["task_id"])}

    return dataset.map(convert)


def humaneval_rows(dataset: Dataset) -> Dataset:
    """HumanEval (`prompt`, `test`, `entry_point`, `task_id`) to trainer rows: the model writes the whole function."""

    def convert(row: dict) -> dict:
        content = f"Complete the following Python function. Write the whole function.\n```python\n{row['prompt']}```"
        # The prompt's code is the trusted definition of the helpers the tests call (`poly` in HumanEval/32): the
        # judge runs it, so a model that redefines them gains nothing.
        return {
            "prompt": [{"role": "user", "content": content}],
            "id": str(row["task_id"]),
            "test_setup_code": row["prompt"],
        }

    return dataset.map(convert, remove_columns=["prompt"])


def _load(convert: Callable[[Dataset], Dataset], name: str, config: str | None, split: str) -> Dataset:
    try:
        dataset = load_set(name, split, config)
    except (ConnectionError, OSError, FileNotFoundError) as error:
        raise RuntimeError(
            f"Could not load {name!r} ({error.__class__.__name__}). Without network access pass a local copy; the "
            "math example (examples/score_math.py) has an embedded offline default."
        ) from error
    return dataset if in_row_format(dataset.column_names) else convert(dataset)


def load_mbpp(name: str, config: str | None, split: str) -> Dataset:
    """MBPP-style training rows from the Hub, a local directory or a JSON-lines file (the `code` task's training
    set)."""
    return _load(mbpp_rows, name, config, split)


def load_humaneval(name: str, config: str | None, split: str) -> list[dict]:
    """HumanEval-style evaluation rows from the Hub, a local directory or a JSON-lines file (the `code` task's
    evaluation set, whichever entry point evaluates it)."""
    return _load(humaneval_rows, name, config, split).to_list()

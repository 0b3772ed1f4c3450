"""Code loaders: MBPP (training) and HumanEval (evaluation) in the row format `code_reward` reads.

MBPP rows keep `test_list` and `test_setup_code`; HumanEval rows keep `test` and `entry_point`, and
the problem's own code as `test_setup_code`. Both get a `prompt`
(the task as a user message) and an `id`.
"""

from __future__ import annotations

from datasets import Dataset, load_dataset


__all__ = ["load_code_task", "mbpp_rows", "humaneval_rows"]


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


def load_code_task(
    dataset_name: str,
    dataset_config: str | None,
    train_split: str,
    eval_dataset_name: str,
    eval_split: str,
) -> tuple[Dataset, list[dict]]:
    """(MBPP-style training rows, HumanEval-style evaluation rows) from the Hub or local copies; the `code` task of
    `score_trl.tasks` names the default sets."""
    try:
        train = mbpp_rows(load_dataset(dataset_name, dataset_config, split=train_split))
        evaluation = humaneval_rows(load_dataset(eval_dataset_name, split=eval_split))
    except (ConnectionError, OSError, FileNotFoundError) as error:
        raise RuntimeError(
            f"Could not load {dataset_name!r} / {eval_dataset_name!r} ({error.__class__.__name__}). Without network "
            "access pass local copies; the math example (examples/score_math.py) has an embedded offline default."
        ) from error
    return train, evaluation.to_list()

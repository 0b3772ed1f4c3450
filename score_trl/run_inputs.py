"""What a run starts from, resolved one way for every entry point: its task, the model and the data.

`score_trl.pipeline.run`, `score_trl.baselines.script.run_baseline` and `score-trl-eval` (`score_trl.eval_cli`) each
call `resolve_inputs`, so that a model is evaluated on the same rows, with the same instruction between attempts,
whichever of them runs it (tests/test_run_inputs.py renders one row through each).
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerate import PartialState
from datasets import Dataset
from transformers import AutoConfig, TrainingArguments

from .data.rows import with_ids
from .loading import load_model_and_tokenizer, resolve_model_path, whole_models
from .tasks import Task, TaskArguments, get_task


__all__ = ["RunInputs", "check_loadable", "resolve_inputs", "resolve_model"]

# The model name that asks for the task's own base model (the embedded task's), as leaving it unset does.
TASK_BASE_MODEL = "embedded"


@dataclass(frozen=True)
class RunInputs:
    """A run's task, the path of the model it starts from (a checkpoint `from_pretrained` reads), its training set
    (None where only evaluation runs) and its evaluation rows, each with an `id`."""

    task: Task
    model_path: str
    train: Dataset | None
    held_out: list[dict]


def check_loadable(model_path: str) -> None:
    """Stop with one line that says why when the model cannot be loaded (`ModelLoadError`), before a trainer fails on
    it with a traceback about repo ids. Its config is the cheap check; only where that fails is the model loaded, by
    the loader whose errors are one line, which also loads forms a config alone does not name."""
    try:
        AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        load_model_and_tokenizer(model_path)


def resolve_model(
    task: Task, model_name_or_path: str | None, load_args: TrainingArguments | None = None, quick_base: bool = False
) -> str:
    """The checkpoint a run loads for the model the user named: a GGUF file or a packaged model converted once
    (`score_trl.loading.resolve_model_path`); `embedded` or none, for a task with its own base model, that model,
    built on first use (`quick_base`: the smaller one smoke runs use). Checked loadable. `load_args` is the training
    config, so that a ZeRO-3 run converts and builds models whole."""
    with whole_models(load_args):
        path = resolve_model_path(model_name_or_path)
    if path in (None, TASK_BASE_MODEL) and task.base_model is not None:
        with PartialState().main_process_first(), whole_models(load_args):
            path = task.base_model(quick_base)
    if path is None:
        raise ValueError("model_name_or_path is not set: name the model to train (a hub id or a path).")
    if path == TASK_BASE_MODEL:
        raise ValueError(
            f"model_name_or_path='{TASK_BASE_MODEL}' is the embedded task's base model, and task {task.name!r} has "
            "none: set `task: embedded`, or name a model."
        )
    check_loadable(path)
    return path


def resolve_inputs(
    args: TaskArguments,
    model_name_or_path: str | None,
    *,
    with_train: bool = True,
    load_args: TrainingArguments | None = None,
    quick_base: bool = False,
) -> RunInputs:
    """The task `args` names, its data (the data sets `args` names, else the task's; the training set only
    `with_train`) and the model (`resolve_model`)."""
    task = get_task(args.task)
    train = None
    if with_train:
        # a config belongs to a set: the task's config goes with the task's set, the user's with the user's
        config = args.dataset_config if args.dataset_name else task.dataset_config
        train = task.load_train(args.dataset_name or task.dataset_name, config, args.dataset_train_split)
    eval_config = args.eval_dataset_config if args.eval_dataset_name else task.eval_dataset_config
    held_out = task.load_eval(args.eval_dataset_name or task.eval_dataset_name, eval_config, args.dataset_test_split)
    held_out = with_ids(held_out)[: args.max_eval_samples]
    return RunInputs(task, resolve_model(task, model_name_or_path, load_args, quick_base), train, held_out)

"""The SCoRe pipeline: evaluate the base model, train Stage I then Stage II, evaluate again, write the before/after
table and the model card, push. `examples/score_math.py` and `examples/score_code.py` are thin scripts around `run`.

One `ScoreScriptArguments` (task, data, evaluation, stages), the trainer config both stages share (a
`MultiTurnRLOOConfig`) and TRL's `ModelConfig`, parsed with `TrlParser` in one pass; `score_trl.stages` derives each
stage's config from them:

    accelerate launch examples/score_math.py --config recipes/embedded/score/config_math.yaml --stage 1
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from trl import ModelConfig, get_peft_config

from .evaluation import EvalSettings, evaluate_checkpoint
from .metrics import format_table
from .run_inputs import resolve_inputs
from .run_record import RunRecord, check_same_run, run_fingerprint
from .stages import (
    StageArguments,
    build_trainer,
    finished_stage,
    model_init_kwargs,
    quantization_config,
    stage_configs,
    train_stage,
)
from .tasks import TaskArguments, get_task, parse_with_recipe
from .trainers import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneTrainer


__all__ = ["ScoreScriptArguments", "each_warning_once", "eval_settings", "parse_args", "run", "smoke_settings"]

logger = logging.getLogger(__name__)


@dataclass
class ScoreScriptArguments(TaskArguments, StageArguments):
    """Task, data, evaluation and stage settings of a SCoRe run (`TaskArguments`: the task and data;
    `score_trl.stages.StageArguments`: the stages)."""

    eval_do_sample: bool = field(default=False, metadata={"help": "Sample in evaluation (default: greedy)."})
    eval_use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Evaluate with vLLM (`make install-vllm`; docs/vllm.md): the same greedy answers as transformers."
        },
    )
    eval_samples_per_problem: int = field(
        default=1, metadata={"help": "Sampled two-turn traces per problem (with eval_do_sample)."}
    )
    turn_feedback: bool = field(
        default=False,
        metadata={
            "help": "Feedback turns: before each later attempt, tell the model what the task's verifier found in its "
            "last one (the task's `feedback`, e.g. 'Your final answer 7 is wrong.'). False: the paper's intrinsic "
            "setting, the same instruction whatever the attempt (docs/feedback.md)."
        },
    )
    smoke: bool = field(
        default=False,
        metadata={
            "help": "A one-minute check of the whole run: replaces max_steps and stage1_max_steps (3), "
            "max_eval_samples (16), eval_samples_per_problem (1) and save_strategy ('no'), logging each value it "
            "replaces; the embedded task gets a base pretrained 150 steps."
        },
    )

    def __post_init__(self):
        TaskArguments.__post_init__(self)
        StageArguments.__post_init__(self)
        get_task(self.task).feedback_for(self.turn_feedback)  # a task with no feedback function refuses it here


def parse_args(default_recipe: Path | None = None, args: list[str] | None = None):
    """(script arguments, trainer config, model config) from the command line, read from `default_recipe` when no
    `--config` is given."""
    return parse_with_recipe((ScoreScriptArguments, MultiTurnRLOOConfig, ModelConfig), default_recipe, args)


# What `--smoke` sets: (script arguments, trainer config).
SMOKE = ({"stage1_max_steps": 3, "max_eval_samples": 16, "eval_samples_per_problem": 1}, {"max_steps": 3})


def smoke_settings(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig) -> tuple[ScoreScriptArguments, dict]:
    """`--smoke`'s script arguments, and the changes it gives every stage's config, each replaced value logged."""
    script_changes = dict(SMOKE[0], stage1_max_steps=None if script_args.stage == "2" else 3)
    config_changes = {**SMOKE[1], "save_strategy": "no"}
    replaced = {name: (getattr(script_args, name), value) for name, value in script_changes.items()}
    # (an enum's value: `save_strategy` is parsed into one)
    replaced.update(
        {
            name: (getattr(getattr(args, name), "value", getattr(args, name)), value)
            for name, value in config_changes.items()
        }
    )
    for name, (old, new) in replaced.items():
        if old != new:
            logger.info("--smoke: %s %s -> %s", name, old, new)
    return dataclasses.replace(script_args, **script_changes), config_changes


def eval_settings(
    script_args: ScoreScriptArguments, source: MultiTurnRLOOTrainer | MultiTurnRLOOConfig
) -> EvalSettings:
    """How the pipeline evaluates: with the script's decoding, rendering turns as `source` does. A trainer gives its
    `get_turn_instruction` (per row, a subclass's override included); a config, where there is no trainer (a
    benchmark's base model, the SFT arms), its `turn_instruction`, or the task's where it leaves it unset."""
    decoding = {
        "max_new_tokens": script_args.eval_max_new_tokens,
        "batch_size": script_args.eval_batch_size,
        "do_sample": script_args.eval_do_sample,
        "use_vllm": script_args.eval_use_vllm,
    }
    if isinstance(source, MultiTurnRLOOConfig):
        task = get_task(script_args.task)
        feedback = task.feedback_for(script_args.turn_feedback)
        return EvalSettings.from_config(source, task.turn_instruction(source.turn_instruction), feedback, **decoding)
    return EvalSettings.from_trainer(source, **decoding)


def evaluate_model(
    model_path: str,
    held_out: list[dict],
    script_args: ScoreScriptArguments,
    trainer: MultiTurnRLOOTrainer,
    output_dir: str,
    name: str,
) -> dict[str, float]:
    """The paper's metrics for the model at `model_path` on `held_out`, rendered as `trainer` renders turns."""
    held_out = [row for row in held_out for _ in range(script_args.eval_samples_per_problem)]
    metrics, _ = evaluate_checkpoint(
        model_path,
        held_out,
        get_task(script_args.task).verifier,
        eval_settings(script_args, trainer),
        load_args=trainer.args,
        seed=trainer.args.seed,
        traces_path=str(Path(output_dir) / f"eval_{name}_traces.jsonl"),
        metrics_path=str(Path(output_dir) / f"eval_{name}.json"),
    )
    return metrics


@contextlib.contextmanager
def each_warning_once() -> Iterator[None]:
    """Inside, each distinct warning (category and message) is shown at most once; which warnings are shown is left
    to the filters as they are.

    Python shows a warning once per place it is raised from, but forgets what it has shown whenever the filters
    change, which every `warnings.catch_warnings()` exit does: TRL enters one while generating, so its
    `is_gradient_checkpointing is deprecated` FutureWarning was printed at every generation of the demo.
    """
    shown: set[tuple[type, str]] = set()
    show = warnings.showwarning

    def show_once(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in shown:
            shown.add((category, str(message)))
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_once
    try:
        yield
    finally:
        warnings.showwarning = show


RESULT_NAMES = {"stage1": ("stage I", "stage1"), "stage2": ("SCoRe", "final")}  # (table row, eval file name)


def run(
    script_args: ScoreScriptArguments,
    args: MultiTurnRLOOConfig,
    model_args: ModelConfig,
    trainer_classes: tuple[type, type] | None = None,
) -> dict[str, dict]:
    """The whole pipeline; returns the evaluation results by name ('base', 'stage I', 'SCoRe').

    `trainer_classes` are Stage I's and Stage II's trainers: pass subclasses to change what they do (None: the task's
    `trainers`, else `StageOneTrainer` and `MultiTurnRLOOTrainer`). Every evaluation renders turns as the stage's
    trainer does (its `get_turn_instruction`, per row), the base model's as the first stage's trainer does. `args` and
    `model_args` are read, never changed: each stage's config is derived from them (`score_trl.stages`). Each distinct
    warning is shown once (`each_warning_once`).
    """
    with each_warning_once():
        return _run(script_args, args, model_args, trainer_classes)


def _run(
    script_args: ScoreScriptArguments,
    args: MultiTurnRLOOConfig,
    model_args: ModelConfig,
    trainer_classes: tuple[type, type] | None,
) -> dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if script_args.torch_threads:
        torch.set_num_threads(script_args.torch_threads)
    state = PartialState()
    smoke_changes = {}
    if script_args.smoke:
        script_args, smoke_changes = smoke_settings(script_args, args)
    inputs = resolve_inputs(script_args, model_args.model_name_or_path, load_args=args, quick_base=script_args.smoke)
    task, base_path, model_path = inputs.task, inputs.model_path, inputs.model_path
    logger.info("task %s, process %d of %d (%s)", task.name, state.process_index, state.num_processes, state.device)
    peft_config = get_peft_config(model_args)
    quantization = quantization_config(model_args, peft_config)
    stages = stage_configs(
        script_args,
        args,
        task,
        base_path,
        peft_config is not None,
        model_init_kwargs=model_init_kwargs(args, model_args),
        **smoke_changes,
    )

    # A run resumes what its output_dir holds (checkpoints, finished stages, evaluations) if its settings are the same:
    # the instruction as the stages show it.
    fingerprint = run_fingerprint(script_args, args, model_args)
    fingerprint["turn_instruction"] = task.turn_instruction(args.turn_instruction)
    resuming = [check_same_run(args.output_dir, fingerprint) if state.is_main_process else None]
    broadcast_object_list(resuming)  # every process skips (or runs) the same stages and evaluations
    record = RunRecord(os.path.join(args.output_dir, "run_metrics.json"), fingerprint, resume=resuming[0])

    def evaluation(path: str, trainer, name: str, row: str) -> dict[str, float]:
        if row in record.evaluations:  # evaluated in an earlier session of this run
            return record.evaluations[row]
        started = time.perf_counter()
        metrics = evaluate_model(path, inputs.held_out, script_args, trainer, args.output_dir, name)
        if state.is_main_process:
            record.add_evaluation(row, metrics)
            record.add_wall_time(f"eval {row}", time.perf_counter() - started)
        return metrics

    results, trainer = {}, None
    trainer_classes = trainer_classes or task.trainers or (StageOneTrainer, MultiTurnRLOOTrainer)
    classes = dict(zip(("stage1", "stage2"), trainer_classes, strict=True))
    for name, make_config in stages.items():
        trainer = None  # the previous stage's model, optimizer and reference go before this stage's are built
        gc.collect()
        feedback = task.feedback_for(script_args.turn_feedback)
        trainer = build_trainer(
            classes[name], model_path, make_config(), inputs.train, task.reward, peft_config, quantization, feedback
        )
        logger.info("%s trains with %s", name, type(trainer).__name__)
        trainer.add_callback(record.for_stage(name))
        if not results:  # the base model, evaluated as the first stage's trainer renders turns
            results["base"] = evaluation(base_path, trainer, "base", "base")
        finished = finished_stage(trainer.args.output_dir)
        if finished is not None:
            logger.info("%s finished in an earlier session: %s", name, finished)
            model_path = finished
        else:
            started = time.perf_counter()
            model_path = train_stage(trainer)
            if state.is_main_process:
                record.add_wall_time(name, time.perf_counter() - started)
        row, file_name = RESULT_NAMES[name]
        results[row] = evaluation(model_path, trainer, file_name, row)

    if state.is_main_process:
        table = format_table(results)
        decoding = f"sampled x{script_args.eval_samples_per_problem}" if script_args.eval_do_sample else "greedy"
        note = "delta_se: delta's standard error over problems"
        setting = "with feedback" if script_args.turn_feedback else "intrinsic"
        turns = f"{args.num_turns} turns, {setting}"
        print(f"\nSelf-correction on held-out problems ({decoding}, {turns}; {note}):\n{table}")
        Path(args.output_dir, "results.md").write_text(table + "\n")
        Path(args.output_dir, "results.json").write_text(json.dumps(results, indent=2))
        logger.info("Final model: %s", model_path)
    if args.push_to_hub:  # Stage I alone pushes its model too; with both stages, only the final one is pushed
        trainer.model_card_metrics = results
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return results

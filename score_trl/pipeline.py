"""The SCoRe pipeline: evaluate the base model, train Stage I then Stage II, evaluate again, write the before/after
table and the model card, push. `examples/score_math.py` and `examples/score_code.py` are thin scripts around `run`.

One `ScoreScriptArguments` (data, evaluation, stages), one `MultiTurnRLOOConfig` (Stage II's trainer arguments; Stage I
takes the same with the `stage1_*` changes) and TRL's `ModelConfig`, parsed with `TrlParser`:

    accelerate launch examples/score_math.py --config recipes/embedded/score/config_math.yaml
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import is_peft_model
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, get_peft_config

from .data.embedded_model import EmbeddedRecipe, build_base_model
from .evaluation import EvalSettings, evaluate
from .loading import load_model_and_tokenizer, resolve_model_path, whole_models
from .metrics import format_table
from .rewards import ANSWER_FORMATS
from .tasks import Task, TaskArguments, get_task, parse_with_recipe
from .trainers import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer
from .trainers.stage_one_config import STAGE_ONE_TURN_BETAS


__all__ = ["ScoreScriptArguments", "derive_config", "eval_settings", "parse_args", "run", "train_stage"]

logger = logging.getLogger(__name__)


@dataclass
class ScoreScriptArguments(TaskArguments):
    """Task, data, evaluation and stage settings of a SCoRe run (see `TaskArguments` for the task and data)."""

    eval_do_sample: bool = field(default=False, metadata={"help": "Sample in evaluation (default: greedy)."})
    eval_samples_per_problem: int = field(
        default=1, metadata={"help": "Sampled two-turn traces per problem (with eval_do_sample)."}
    )
    stage: str = field(default="both", metadata={"help": "'1' (Stage I), '2' (Stage II) or 'both'."})
    stage1_max_steps: int | None = field(
        default=None, metadata={"help": "Training steps of Stage I when stage='both' (None: `max_steps`)."}
    )
    stage1_turn_betas: list[float] | None = field(
        default=None,
        metadata={"help": "Per-turn KL weights of Stage I when stage='both' (None: StageOneConfig's, [0.1, 0.01])."},
    )
    stage2_reference: str = field(
        default="base",
        metadata={
            "help": "KL reference of Stage II when stage='both': 'base' (the model before Stage I, as in the paper) "
            "or 'stage1' (the Stage I model it starts from). With LoRA only 'stage1' is possible."
        },
    )
    smoke: bool = field(default=False, metadata={"help": "A one-minute run: few steps, a small eval set and base."})

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in ("1", "2", "both"):
            raise ValueError(f"stage={self.stage!r}: use '1', '2' or 'both'.")
        if self.stage2_reference not in ("base", "stage1"):
            raise ValueError(f"stage2_reference={self.stage2_reference!r}: use 'base' or 'stage1'.")
        if self.stage != "both" and (self.stage1_max_steps is not None or self.stage1_turn_betas is not None):
            raise ValueError(
                f"stage1_max_steps / stage1_turn_betas apply when stage='both' (here stage={self.stage!r}), where "
                "they would be ignored: set `max_steps` / `turn_betas` for a single stage."
            )


def parse_args(default_recipe: Path | None = None, args: list[str] | None = None):
    """(script arguments, trainer config, model config) from the command line, read from `default_recipe` when no
    `--config` is given."""
    return parse_with_recipe((ScoreScriptArguments, MultiTurnRLOOConfig, ModelConfig), default_recipe, args)


def derive_config(config_cls, args: MultiTurnRLOOConfig, **changes) -> MultiTurnRLOOConfig:
    """A config of `config_cls` with `args`'s values and `changes`. `generation_batch_size` and `beta` are left to be
    derived again (from `steps_per_generation` and `turn_betas`): the configs refuse a conflicting value."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return config_cls(**{**values, "generation_batch_size": None, "beta": None, **changes})


def eval_settings(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig) -> EvalSettings:
    """How the pipeline evaluates: the trainers' prompt rendering (`args`; the task's instruction when `args` names
    none) and the script's decoding."""
    settings = EvalSettings.from_config(
        args,
        max_new_tokens=script_args.eval_max_new_tokens,
        batch_size=script_args.eval_batch_size,
        do_sample=script_args.eval_do_sample,
    )
    if args.turn_instruction is None:
        settings.instruction = get_task(script_args.task).instruction
    return settings


def evaluate_model(
    model_path: str, held_out: list[dict], script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, name: str
) -> dict[str, float]:
    """The paper's metrics for the model at `model_path` on `held_out`, with the trainers' prompt rendering."""
    with whole_models(args):
        model, tokenizer = load_model_and_tokenizer(model_path)
    model.to(PartialState().device)
    settings = eval_settings(script_args, args)
    held_out = [row for row in held_out for _ in range(script_args.eval_samples_per_problem)]
    out = Path(args.output_dir)
    # Seeded here, not only at start-up: each evaluation then samples the same whatever ran before it in the process
    # (pretraining the base model, a stage), so a rerun prints the same table.
    set_seed(args.seed)
    metrics, _ = evaluate(
        model,
        tokenizer,
        held_out,
        get_task(script_args.task).verifier,
        settings,
        traces_path=str(out / f"eval_{name}_traces.jsonl"),
        metrics_path=str(out / f"eval_{name}.json"),
    )
    return metrics


def train_stage(trainer_cls, model_path: str, args, train_dataset, task: Task, peft_config=None):
    """Train one stage (resuming from the last checkpoint in `args.output_dir`), save it and its model card; returns
    (the path the next stage and the evaluation load, the trainer). A LoRA model is merged for them."""
    trainer = trainer_cls(model_path, task.reward, args=args, train_dataset=train_dataset, peft_config=peft_config)
    trainer.answer_format = ANSWER_FORMATS[task.verifier]  # the answer-changed logs read the task's answers
    last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    if last is not None:
        logger.info("Resuming %s from %s", trainer_cls.__name__, last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(dataset_name=None, tags=["score-trl"])
    trainer.accelerator.wait_for_everyone()  # the next stage and the evaluation load what the main process wrote
    if not is_peft_model(trainer.model):
        return args.output_dir, trainer
    # LoRA: the next stage and the evaluation start from the merged model (not under ZeRO-3, where it is sharded)
    merged_dir = os.path.join(args.output_dir, "merged")
    if trainer.accelerator.is_main_process:
        trainer.accelerator.unwrap_model(trainer.model).merge_and_unload().save_pretrained(merged_dir)
        trainer.processing_class.save_pretrained(merged_dir)
    trainer.accelerator.wait_for_everyone()
    return merged_dir, trainer


def _stage1_config(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig) -> StageOneConfig:
    if script_args.stage != "both":
        if args.turn_betas[0] <= args.turn_betas[-1]:
            logger.warning(
                "Stage I with turn_betas=%s: the method pins turn 1 with a stronger KL (e.g. [0.1, 0.01]).",
                args.turn_betas,
            )
        return derive_config(StageOneConfig, args)
    changes = {"output_dir": os.path.join(args.output_dir, "stage1"), "push_to_hub": False}
    # Stage I's own KL weights, not Stage II's carried over: the script's, else StageOneConfig's default.
    changes["turn_betas"] = list(script_args.stage1_turn_betas or STAGE_ONE_TURN_BETAS)
    if script_args.stage1_max_steps is not None:
        changes["max_steps"] = script_args.stage1_max_steps
    return derive_config(StageOneConfig, args, **changes)


def _stage2_config(
    script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, base_path: str, peft: bool
) -> MultiTurnRLOOConfig:
    if script_args.stage != "both":
        if args.ref_model_name_or_path is None and not peft:
            logger.warning(
                "Stage II alone with no ref_model_name_or_path: the KL reference is the model it starts from. The "
                "paper keeps the KL to the base model: set ref_model_name_or_path to it."
            )
        return args
    reference = args.ref_model_name_or_path
    if reference is None and script_args.stage2_reference == "base":
        if peft:
            logger.warning("With LoRA, Stage II's KL reference is the Stage I model (its adapter disabled).")
        else:
            reference = base_path
    stage2_dir = os.path.join(args.output_dir, "stage2")
    return derive_config(MultiTurnRLOOConfig, args, output_dir=stage2_dir, ref_model_name_or_path=reference)


def run(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, model_args: ModelConfig) -> dict[str, dict]:
    """The whole pipeline; returns the evaluation results by name ('base', 'stage I', 'SCoRe')."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if script_args.torch_threads:
        torch.set_num_threads(script_args.torch_threads)
    state = PartialState()
    task = get_task(script_args.task)
    logger.info("task %s, process %d of %d (%s)", task.name, state.process_index, state.num_processes, state.device)
    if args.turn_instruction is None:
        args.turn_instruction = task.instruction
    if script_args.smoke:
        args.max_steps = 3
        script_args.stage1_max_steps = 3 if script_args.stage == "both" else None
        script_args.max_eval_samples, script_args.eval_samples_per_problem = 16, 1
        args.save_strategy = "no"
    train_dataset, held_out = script_args.load_data()

    args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        **({"dtype": model_args.dtype} if model_args.dtype not in (None, "auto") else {}),
    }
    peft_config = get_peft_config(model_args)
    with whole_models(args):  # a GGUF file or packaged model: its checkpoint, converted whole (also under ZeRO-3)
        model_path = resolve_model_path(model_args.model_name_or_path)
    if task.offline_model and model_path in (None, "embedded"):
        recipe = EmbeddedRecipe(pretrain_steps=150) if script_args.smoke else EmbeddedRecipe()
        with state.main_process_first(), whole_models(args):
            model_path = build_base_model(recipe)
    if model_path is None:
        raise ValueError("model_name_or_path is not set: name the model to train (a hub id or a path).")

    base_path = model_path
    results = {"base": evaluate_model(model_path, held_out, script_args, args, "base")}
    trainer = None
    # Each stage's config is built just before its trainer: building a config resets accelerate's state, and under
    # DeepSpeed a second Accelerator may not be handed a plugin of its own.
    if script_args.stage in ("1", "both"):
        stage1_args = _stage1_config(script_args, args)
        model_path, trainer = train_stage(StageOneTrainer, model_path, stage1_args, train_dataset, task, peft_config)
        results["stage I"] = evaluate_model(model_path, held_out, script_args, args, "stage1")
    if script_args.stage in ("2", "both"):
        trainer = None  # the Stage I trainer's model, optimizer and reference go before Stage II's are built
        gc.collect()
        stage2_args = _stage2_config(script_args, args, base_path, peft_config is not None)
        model_path, trainer = train_stage(
            MultiTurnRLOOTrainer, model_path, stage2_args, train_dataset, task, peft_config
        )
        results["SCoRe"] = evaluate_model(model_path, held_out, script_args, args, "final")

    if state.is_main_process:
        table = format_table(results)
        decoding = f"sampled x{script_args.eval_samples_per_problem}" if script_args.eval_do_sample else "greedy"
        note = "delta_se: delta's standard error over problems"
        print(f"\nSelf-correction on held-out problems ({decoding}, two turns; {note}):\n{table}")
        Path(args.output_dir, "results.md").write_text(table + "\n")
        Path(args.output_dir, "results.json").write_text(json.dumps(results, indent=2))
        logger.info("Final model: %s", model_path)
    if args.push_to_hub:  # Stage I alone pushes its model too; with both stages, only the final one is pushed
        trainer.model_card_metrics = results
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return results

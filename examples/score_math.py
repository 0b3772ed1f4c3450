"""SCoRe on math: evaluate the base model, run Stage I then Stage II, evaluate again, print the before/after table.

With no arguments it runs the embedded default (recipes/embedded/score/config_math.yaml), offline on a CPU:

    accelerate launch examples/score_math.py
    accelerate launch examples/score_math.py --smoke            # a one-minute check of the whole pipeline

On a real model and MATH, one recipe per stage:

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_math.py \\
        --config recipes/Qwen2.5-Math-1.5B-Instruct/score/config_stage1_math.yaml --stage 1
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_math.py \\
        --config recipes/Qwen2.5-Math-1.5B-Instruct/score/config_stage2_math.yaml --stage 2

Two data-parallel processes on a CPU (gloo): `torchrun --nproc_per_node 2 examples/score_math.py --smoke`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, TrlParser, get_peft_config

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer
from score_trl.data import EmbeddedRecipe, build_base_model, load_math_task
from score_trl.evaluation import EvalSettings, evaluate
from score_trl.metrics import format_table
from score_trl.rewards import math_reward


logger = logging.getLogger("score_math")
EMBEDDED_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml"


@dataclass
class Task:
    """What differs between the math and the code example."""

    load: Callable[..., tuple[Dataset, list[dict]]]
    reward: Callable
    verifier: str


MATH = Task(load=load_math_task, reward=math_reward, verifier="math")


@dataclass
class ScriptArguments:
    """Data, stage and evaluation settings of examples/score_math.py."""

    dataset_name: str = field(
        default="embedded", metadata={"help": "'embedded', or a MATH-style set (hub id or path) to train on."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config of the training set (None: all)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset_name: str = field(
        default="HuggingFaceH4/MATH-500", metadata={"help": "Evaluation set for a real run (ignored when embedded)."}
    )
    eval_split: str = field(default="test", metadata={"help": "Split of the evaluation set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many problems."})
    eval_max_new_tokens: int = field(default=1024, metadata={"help": "Tokens per turn in evaluation."})
    eval_batch_size: int = field(default=16, metadata={"help": "Problems per generate call in evaluation."})
    eval_do_sample: bool = field(default=False, metadata={"help": "Sample in evaluation (default: greedy)."})
    eval_samples_per_problem: int = field(
        default=1, metadata={"help": "Sampled two-turn traces per problem (with eval_do_sample)."}
    )
    stage: str = field(default="both", metadata={"help": "'1' (Stage I), '2' (Stage II) or 'both'."})
    stage1_max_steps: int = field(default=150, metadata={"help": "Training steps of Stage I when stage='both'."})
    stage1_turn_betas: list[float] = field(
        default_factory=lambda: [0.1, 0.01], metadata={"help": "Per-turn KL weights of Stage I (strong on turn 1)."}
    )
    stage2_reference: str = field(
        default="base",
        metadata={
            "help": "KL reference of Stage II when stage='both': 'base' (the model before Stage I, as in the paper) "
            "or 'stage1' (the Stage I model Stage II starts from). With LoRA only 'stage1' is possible."
        },
    )
    torch_threads: int | None = field(default=None, metadata={"help": "torch threads per process (None: torch's)."})
    smoke: bool = field(default=False, metadata={"help": "A one-minute run: few steps, a small eval set and base."})


def run_evaluation(model_path: str, held_out: list[dict], script_args, training_args, name: str, task: Task) -> dict:
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as error:  # a hub id with no network (or a typo)
        raise RuntimeError(
            f"Could not load the model {model_path!r}: {error}\nWithout network access, run the embedded default "
            "(no --config and no --model_name_or_path) or pass a local path."
        ) from error
    model.to(PartialState().device)
    settings = EvalSettings.from_config(
        training_args,
        max_new_tokens=script_args.eval_max_new_tokens,
        batch_size=script_args.eval_batch_size,
        do_sample=script_args.eval_do_sample,
    )
    held_out = [row for row in held_out for _ in range(script_args.eval_samples_per_problem)]
    out = Path(training_args.output_dir)
    # Seeded here, not only at start-up: each evaluation then samples the same whatever ran before it in the process
    # (pretraining the base model, a stage), so a rerun prints the same table.
    set_seed(training_args.seed)
    metrics, _ = evaluate(
        model,
        tokenizer,
        held_out,
        task.verifier,
        settings,
        traces_path=str(out / f"eval_{name}_traces.jsonl"),
        metrics_path=str(out / f"eval_{name}.json"),
    )
    return metrics


def derive_config(config_cls, args: MultiTurnRLOOConfig, **changes) -> MultiTurnRLOOConfig:
    """A config of `config_cls` with `args`'s values and `changes`. `generation_batch_size` and `beta` are left to be
    derived again (from `steps_per_generation` and `turn_betas`): the configs refuse a conflicting value."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return config_cls(**{**values, "generation_batch_size": None, "beta": None, **changes})


def train_stage(
    trainer_cls, model_path: str, args, train_dataset, task: Task, peft_config=None
) -> tuple[str, MultiTurnRLOOTrainer]:
    trainer = trainer_cls(model_path, task.reward, args=args, train_dataset=train_dataset, peft_config=peft_config)
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


def main(
    script_args: ScriptArguments, training_args: MultiTurnRLOOConfig, model_args: ModelConfig, task: Task = MATH
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if script_args.torch_threads:
        torch.set_num_threads(script_args.torch_threads)
    state = PartialState()
    set_seed(training_args.seed)  # the base model's sampled evaluation runs before any trainer seeds
    logger.info("process %d of %d (%s)", state.process_index, state.num_processes, state.device)
    if script_args.smoke:
        training_args.max_steps, script_args.stage1_max_steps = 3, 3
        script_args.max_eval_samples, script_args.eval_samples_per_problem = 16, 1
        training_args.save_strategy = "no"
    train_dataset, held_out = task.load(
        script_args.dataset_name,
        script_args.dataset_config,
        script_args.dataset_train_split,
        script_args.eval_dataset_name,
        script_args.eval_split,
    )
    if script_args.max_eval_samples:
        held_out = held_out[: script_args.max_eval_samples]

    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        **({"dtype": model_args.dtype} if model_args.dtype not in (None, "auto") else {}),
    }
    peft_config = get_peft_config(model_args)
    model_path = model_args.model_name_or_path
    if model_path in (None, "embedded"):
        recipe = EmbeddedRecipe(pretrain_steps=150) if script_args.smoke else EmbeddedRecipe()
        with state.main_process_first():
            model_path = build_base_model(recipe)

    if script_args.stage2_reference not in ("base", "stage1"):
        raise ValueError(f"stage2_reference={script_args.stage2_reference!r}: use 'base' or 'stage1'.")
    base_path = model_path
    results = {"base": run_evaluation(model_path, held_out, script_args, training_args, "base", task)}
    if script_args.stage in ("1", "both"):
        both = script_args.stage == "both"
        stage1_args = derive_config(
            StageOneConfig,
            training_args,
            output_dir=os.path.join(training_args.output_dir, "stage1") if both else training_args.output_dir,
            turn_betas=list(script_args.stage1_turn_betas) if both else training_args.turn_betas,
            max_steps=script_args.stage1_max_steps if both else training_args.max_steps,
            push_to_hub=training_args.push_to_hub and not both,  # with both stages, only the final model is pushed
        )
        model_path, _ = train_stage(StageOneTrainer, model_path, stage1_args, train_dataset, task, peft_config)
        results["stage I"] = run_evaluation(model_path, held_out, script_args, training_args, "stage1", task)
    if script_args.stage in ("2", "both"):
        stage2_args = training_args
        if script_args.stage == "both":
            reference = training_args.ref_model_name_or_path
            if reference is None and script_args.stage2_reference == "base":
                if peft_config is None:
                    reference = base_path
                else:
                    logger.warning("With LoRA, Stage II's KL reference is the Stage I model (adapter disabled).")
            stage2_args = derive_config(
                MultiTurnRLOOConfig,
                training_args,
                output_dir=os.path.join(training_args.output_dir, "stage2"),
                ref_model_name_or_path=reference,
            )
        model_path, trainer = train_stage(
            MultiTurnRLOOTrainer, model_path, stage2_args, train_dataset, task, peft_config
        )
        results["SCoRe"] = run_evaluation(model_path, held_out, script_args, training_args, "final", task)

    if state.is_main_process:
        table = format_table(results)
        decoding = f"sampled x{script_args.eval_samples_per_problem}" if script_args.eval_do_sample else "greedy"
        note = "delta_se: delta's standard error over problems"
        print(f"\nSelf-correction on held-out problems ({decoding}, two turns; {note}):\n{table}")
        Path(training_args.output_dir, "results.md").write_text(table + "\n")
        Path(training_args.output_dir, "results.json").write_text(json.dumps(results, indent=2))
        logger.info("Final model: %s", model_path)
    if training_args.push_to_hub and script_args.stage in ("2", "both"):
        trainer.model_card_metrics = results
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, MultiTurnRLOOConfig, ModelConfig))


if __name__ == "__main__":
    if "--config" not in sys.argv:
        sys.argv[1:1] = ["--config", str(EMBEDDED_RECIPE)]
    main(*make_parser().parse_args_and_config())
    # Without it, a rank of a multi-process run can abort at exit ("terminate called without an active exception").
    PartialState().destroy_process_group()

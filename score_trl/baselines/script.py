"""The SFT baselines as scripts: arguments, base evaluation, training with STaR or Pair-SFT, the before/after table.
`examples/star_math.py` and `examples/pair_sft_math.py` are thin scripts around `run_baseline`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from trl import ModelConfig, SFTConfig

from ..evaluation import EvalSettings, evaluate_checkpoint
from ..metrics import format_table
from ..run_inputs import resolve_inputs
from ..tasks import TaskArguments, get_task, parse_with_recipe
from .pair_sft import run_pair_sft
from .star import run_star


__all__ = ["BASELINES", "BaselineArguments", "parse_baseline_args", "run_baseline"]


@dataclass
class BaselineArguments(TaskArguments):
    """Task, data, sampling and evaluation settings of the SFT baselines (see `TaskArguments`)."""

    instruction: str | None = field(default=None, metadata={"help": "Correction instruction (None: the task's)."})
    samples_per_problem: int = field(default=4, metadata={"help": "Two-turn traces sampled per training problem."})
    sample_max_new_tokens: int = field(default=1024, metadata={"help": "Tokens per turn when sampling traces."})
    iterations: int = field(default=3, metadata={"help": "STaR: rounds of sample -> filter -> SFT."})
    keep_correct: bool = field(default=False, metadata={"help": "STaR D+: also keep right -> right traces."})
    include_correct: bool = field(default=False, metadata={"help": "Pair-SFT D+: also pair right first attempts."})


def _star(model_path, rows, sft_args, sampling, args: BaselineArguments) -> str:
    verifier = get_task(args.task).verifier
    return run_star(
        model_path, rows, sft_args, sampling, verifier, args.iterations, args.samples_per_problem, args.keep_correct
    )


def _pair_sft(model_path, rows, sft_args, sampling, args: BaselineArguments) -> str:
    verifier = get_task(args.task).verifier
    return run_pair_sft(model_path, rows, sft_args, sampling, verifier, args.samples_per_problem, args.include_correct)


BASELINES = {"STaR": _star, "Pair-SFT": _pair_sft}


def parse_baseline_args(default_recipe: Path | None = None, args: list[str] | None = None):
    """(baseline arguments, SFT config, model config), read from `default_recipe` when no `--config` is given."""
    return parse_with_recipe((BaselineArguments, SFTConfig, ModelConfig), default_recipe, args)


def _evaluate(model_path: str, held_out, settings: EvalSettings, verifier: str, sft_args: SFTConfig, name: str):
    traces_path = str(Path(sft_args.output_dir) / f"eval_{name}_traces.jsonl")
    return evaluate_checkpoint(
        model_path, held_out, verifier, settings, load_args=sft_args, seed=sft_args.seed, traces_path=traces_path
    )[0]


def run_baseline(method: str, args: BaselineArguments, sft_args: SFTConfig, model_args: ModelConfig) -> dict:
    """Evaluate the base model, train it with `method` (a key of `BASELINES`), evaluate again, print the table."""
    logging.basicConfig(level=logging.INFO)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    inputs = resolve_inputs(args, model_args.model_name_or_path, load_args=sft_args)
    task, model_path, held_out = inputs.task, inputs.model_path, inputs.held_out
    instruction = task.turn_instruction(args.instruction)
    sampling = EvalSettings(instruction=instruction, max_new_tokens=args.sample_max_new_tokens, batch_size=64)
    evaluation = EvalSettings(
        instruction=instruction, max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch_size
    )
    out = Path(sft_args.output_dir)
    results = {"base": _evaluate(model_path, held_out, evaluation, task.verifier, sft_args, "base")}
    trained = BASELINES[method](model_path, inputs.train.to_list(), sft_args, sampling, args)
    results[method] = _evaluate(trained, held_out, evaluation, task.verifier, sft_args, "final")
    if PartialState().is_main_process:
        print(f"\nSelf-correction on held-out problems (greedy, two turns):\n{format_table(results)}")
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return results

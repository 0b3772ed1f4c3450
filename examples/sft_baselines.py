"""What examples/star_math.py and examples/pair_sft_math.py share: arguments, the run, the before/after table."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, SFTConfig, TrlParser

from score_trl.data import EMBEDDED_INSTRUCTION, EmbeddedRecipe, build_base_model, load_math_task
from score_trl.evaluation import EvalSettings, evaluate
from score_trl.metrics import format_table
from score_trl.prompts import MATH_CORRECTION_INSTRUCTION


@dataclass
class BaselineArguments:
    """Data, sampling and evaluation settings of the SFT baselines."""

    dataset_name: str = field(default="embedded", metadata={"help": "'embedded', or a MATH-style set to train on."})
    dataset_config: str | None = field(default=None, metadata={"help": "Config of the training set (None: all)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to sample training problems from."})
    eval_dataset_name: str = field(default="HuggingFaceH4/MATH-500", metadata={"help": "Evaluation set."})
    eval_split: str = field(default="test", metadata={"help": "Split of the evaluation set."})
    instruction: str | None = field(default=None, metadata={"help": "Correction instruction (default per task)."})
    samples_per_problem: int = field(default=4, metadata={"help": "Two-turn traces sampled per training problem."})
    sample_max_new_tokens: int = field(default=1024, metadata={"help": "Tokens per turn when sampling traces."})
    eval_max_new_tokens: int = field(default=1024, metadata={"help": "Tokens per turn in evaluation."})
    eval_batch_size: int = field(default=16, metadata={"help": "Problems per generate call."})
    iterations: int = field(default=3, metadata={"help": "STaR: rounds of sample -> filter -> SFT."})
    keep_correct: bool = field(default=False, metadata={"help": "STaR D+: also keep right -> right traces."})
    include_correct: bool = field(default=False, metadata={"help": "Pair-SFT D+: also pair right first attempts."})
    torch_threads: int | None = field(default=None, metadata={"help": "torch threads per process."})


def _evaluate(model_path, held_out, settings, out: Path, name: str) -> dict:
    model = AutoModelForCausalLM.from_pretrained(model_path).to(PartialState().device)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    metrics, _ = evaluate(
        model, tokenizer, held_out, "math", settings, traces_path=str(out / f"eval_{name}_traces.jsonl")
    )
    return metrics


def run(method: str, train_fn, recipe: Path) -> None:
    """Parse (with `recipe` when no --config is given), train with `train_fn`, print base vs trained."""
    if "--config" not in sys.argv:
        sys.argv[1:1] = ["--config", str(recipe)]
    args, sft_args, model_args = TrlParser((BaselineArguments, SFTConfig, ModelConfig)).parse_args_and_config()
    logging.basicConfig(level=logging.INFO)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    train, held_out = load_math_task(
        args.dataset_name, args.dataset_config, args.dataset_train_split, args.eval_dataset_name, args.eval_split
    )
    model_path = model_args.model_name_or_path
    if model_path in (None, "embedded"):
        with PartialState().main_process_first():
            model_path = build_base_model(EmbeddedRecipe())
    instruction = args.instruction or (
        EMBEDDED_INSTRUCTION if args.dataset_name == "embedded" else MATH_CORRECTION_INSTRUCTION
    )
    sampling = EvalSettings(instruction=instruction, max_new_tokens=args.sample_max_new_tokens, batch_size=64)
    evaluation = EvalSettings(
        instruction=instruction, max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch_size
    )
    out = Path(sft_args.output_dir)
    results = {"base": _evaluate(model_path, held_out, evaluation, out, "base")}
    trained = train_fn(model_path, train.to_list(), sft_args, sampling, args)
    results[method] = _evaluate(trained, held_out, evaluation, out, "final")
    if PartialState().is_main_process:
        print(f"\nSelf-correction on held-out problems (greedy, two turns):\n{format_table(results)}")
        (out / "results.json").write_text(json.dumps(results, indent=2))

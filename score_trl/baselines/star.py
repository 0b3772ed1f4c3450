"""STaR for self-correction (the paper's section 4 baseline): keep the sampled traces whose wrong first attempt
became right (D_StaR; `keep_correct=True` also keeps right -> right, the D+ variant), fine-tune on turn 2 only, and
repeat from the latest model."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from datasets import Dataset
from trl import SFTConfig

from ..data.rows import with_ids
from ..evaluation import EvalSettings, InstructionFn
from .common import pair, pairs_dataset, sample_traces, sft_on_pairs


def star_dataset(
    traces: Sequence[dict],
    rows: Sequence[dict],
    instruction: str | InstructionFn,
    keep_correct: bool = False,
    threshold: float = 1.0,
) -> Dataset:
    """The STaR pairs of `traces` (`id`, `y1`, `y2`, `r1`, `r2`): wrong -> right, plus right -> right with
    `keep_correct`."""
    problems = {row["id"]: row for row in with_ids(rows)}
    kept = []
    for t in traces:
        if t["r1"] is None or t["r2"] is None:
            continue
        first_ok, second_ok = t["r1"] >= threshold, t["r2"] >= threshold
        if second_ok and (not first_ok or keep_correct):
            kept.append(pair(problems[t["id"]], t["y1"], instruction, t["y2"]))
    return pairs_dataset(kept)


def run_star(
    model_path: str,
    rows: Sequence[dict],
    args: SFTConfig,
    settings: EvalSettings,
    verifier: str = "math",
    iterations: int = 3,
    samples_per_problem: int = 4,
    keep_correct: bool = False,
) -> str:
    """`iterations` rounds of sample -> filter -> SFT, each sampling from the latest model. Each round's pairs are
    saved as JSONL in `<output_dir>/iteration-<k>/`. Returns the final model's path."""
    for k in range(1, iterations + 1):
        traces = sample_traces(model_path, rows, verifier, settings, samples_per_problem)
        pairs = star_dataset(traces, rows, settings.instruction_for, keep_correct, settings.correct_threshold)
        round_args = dataclasses.replace(args, output_dir=os.path.join(args.output_dir, f"iteration-{k}"))
        os.makedirs(round_args.output_dir, exist_ok=True)
        pairs.to_json(os.path.join(round_args.output_dir, "star_pairs.jsonl"))
        model_path = sft_on_pairs(model_path, pairs, round_args)
    return model_path

"""Pair-SFT (Welleck et al. 2023 style, the paper's section 4 baseline): pair each wrong first attempt with a random
correct response to the same problem, drawn from all first and second attempts; `include_correct=True` (D+) also
pairs right first attempts with a random correct response. One epoch of SFT on (x, y1, p) -> y_correct."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Sequence

from datasets import Dataset
from trl import SFTConfig

from ..data.rows import with_ids
from ..evaluation import EvalSettings, InstructionFn
from .common import pair, pairs_dataset, sample_traces, sft_on_pairs


def pair_sft_dataset(
    traces: Sequence[dict],
    rows: Sequence[dict],
    instruction: str | InstructionFn,
    include_correct: bool = False,
    threshold: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """The Pair-SFT pairs of `traces`; a problem with no correct response anywhere gives none."""
    problems = {row["id"]: row for row in with_ids(rows)}
    correct = defaultdict(list)
    for t in traces:
        for turn in ("1", "2"):
            if t[f"r{turn}"] is not None and t[f"r{turn}"] >= threshold:
                correct[t["id"]].append(t[f"y{turn}"])
    rng = random.Random(seed)
    kept = []
    for t in traces:
        if t["r1"] is None or not correct[t["id"]]:
            continue
        if t["r1"] < threshold or include_correct:
            kept.append(pair(problems[t["id"]], t["y1"], instruction, rng.choice(correct[t["id"]])))
    return pairs_dataset(kept)


def run_pair_sft(
    model_path: str,
    rows: Sequence[dict],
    args: SFTConfig,
    settings: EvalSettings,
    verifier: str = "math",
    samples_per_problem: int = 4,
    include_correct: bool = False,
) -> str:
    """Sample, pair, one epoch of SFT (`args.num_train_epochs`); the pairs are saved to `<output_dir>/pairs.jsonl`."""
    traces = sample_traces(model_path, rows, verifier, settings, samples_per_problem)
    pairs = pair_sft_dataset(
        traces, rows, settings.instruction_for, include_correct, settings.correct_threshold, args.seed
    )
    os.makedirs(args.output_dir, exist_ok=True)
    pairs.to_json(os.path.join(args.output_dir, "pairs.jsonl"))
    return sft_on_pairs(model_path, pairs, args)

"""A base model's two-turn behaviour on a recipe's task, before any RL: the paper's columns, each with its standard
error over problems, greedy and sampled (the base table of docs/results.md, SmolLM2-135M-Instruct on arithmetic).

    python benchmarks/base_two_turn.py --config recipes/SmolLM2-135M-Instruct/score/config_arithmetic.yaml
    python benchmarks/base_two_turn.py --config ... --problems 64 --samples 4 --temperatures 0.7 1.0

Evaluation renders turns exactly as the recipe's trainers do (`score_trl.pipeline.eval_settings`). Standard errors
count a problem's sampled traces as one draw (`score_trl.metrics.clustered_standard_error`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import torch
from transformers import set_seed
from trl import ModelConfig, TrlParser

from score_trl import MultiTurnRLOOConfig
from score_trl.evaluation import evaluate
from score_trl.loading import load_model_and_tokenizer
from score_trl.metrics import answer_changed, clustered_standard_error
from score_trl.pipeline import ScoreScriptArguments, eval_settings
from score_trl.rewards import ANSWER_FORMATS
from score_trl.run_inputs import resolve_inputs


@dataclass
class BaseArguments:
    """What to measure on top of the recipe's settings."""

    problems: int = field(default=64, metadata={"help": "Held-out problems evaluated."})
    samples: int = field(default=4, metadata={"help": "Sampled two-turn traces per problem."})
    temperatures: list[float] = field(
        default_factory=lambda: [],
        metadata={"help": "Sampling temperatures (none given: the recipe's `temperature`)."},
    )
    greedy: bool = field(default=True, metadata={"help": "Also evaluate greedy decoding."})
    output: str | None = field(default=None, metadata={"help": "Write the rows as JSON here."})


def row_with_errors(traces: list[dict], verifier: str) -> dict[str, float]:
    """Acc@t1, Acc@t2, delta, i->c, c->i and the answer-changed rate, each with its clustered standard error."""
    ids = [t["id"] for t in traces]
    r1 = [float(t["r1"] is not None and t["r1"] >= 1.0) for t in traces]
    r2 = [float(t["r2"] is not None and t["r2"] >= 1.0) for t in traces]
    answers = ANSWER_FORMATS[verifier]
    columns = {
        "acc_t1": r1,
        "acc_t2": r2,
        "delta": [b - a for a, b in zip(r1, r2, strict=True)],
        "i2c": [float(a == 0 and b == 1) for a, b in zip(r1, r2, strict=True)],
        "c2i": [float(a == 1 and b == 0) for a, b in zip(r1, r2, strict=True)],
        "changed": [float(answer_changed(t["y1"], t["y2"], **answers)) for t in traces],
    }
    row = {}
    for name, values in columns.items():
        row[name] = sum(values) / len(values)
        row[f"{name}_se"] = clustered_standard_error(values, ids)
    row["n"] = len(traces)
    return row


def main(base: BaseArguments, script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, model_args) -> list[dict]:
    torch.set_num_threads(script_args.torch_threads or torch.get_num_threads())
    inputs = resolve_inputs(script_args, model_args.model_name_or_path, with_train=False)
    task, held_out = inputs.task, inputs.held_out[: base.problems]
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(inputs.model_path)
    print(f"model loaded in {time.perf_counter() - start:.1f} s")
    model.eval()
    runs = ([("greedy", None)] if base.greedy else []) + [
        (f"sampled T={t} x{base.samples}", t) for t in (base.temperatures or [args.temperature])
    ]
    rows = []
    for name, temperature in runs:
        settings = eval_settings(script_args, args)
        settings.do_sample, settings.temperature = temperature is not None, temperature or 1.0
        problems = held_out if temperature is None else [row for row in held_out for _ in range(base.samples)]
        set_seed(args.seed)
        start = time.perf_counter()
        _, traces = evaluate(model, tokenizer, problems, task.verifier, settings)
        row = {"decoding": name, **row_with_errors(traces, task.verifier), "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ["acc_t1", "acc_t2", "delta", "i2c", "c2i", "changed"]
    print("\n| decoding | " + " | ".join(columns) + " | n |")
    print("|---" * (len(columns) + 2) + "|")
    for row in rows:
        cells = " | ".join(f"{row[c]:.3f} ± {row[f'{c}_se']:.3f}" for c in columns)
        print(f"| {row['decoding']} | {cells} | {row['n']} |")
    if base.output:
        with open(base.output, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main(*TrlParser((BaseArguments, ScoreScriptArguments, MultiTurnRLOOConfig, ModelConfig)).parse_args_and_config())

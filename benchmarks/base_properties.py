r"""The embedded task's properties, measured on a base model before any RL (the table in docs/results.md).

    python benchmarks/base_properties.py                       # the demo's base, 200 problems x 8 sampled traces
    python benchmarks/base_properties.py --task rival          # a variant base of benchmarks/reproduce.py
    python benchmarks/base_properties.py --model outputs/score-embedded/stage2 --split train

Every lookup the model writes is checked against the one it should have computed from the numbers it wrote itself:
the check's product and sum, its verdict, the worked solve's difference and quotient, and whether the answer after a
solve is the quotient it reached. Then the habits: how often it changes its answer after an "ok" and after a "no",
how often it solves in steps after a "no", and what a change of a wrong first answer is worth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import TrlParser
from variants import VARIANTS, build_variant

from score_trl.embedded import make_problems, split_problems
from score_trl.embedded.task import INVERSE
from score_trl.evaluation import evaluate
from score_trl.pipeline import eval_settings, parse_args


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml"
CHECK = re.compile(r"check: (\d) \* (\d) = (\d) , (\d) \+ (\d) = (\d) , (ok|no) \.")
SOLVE = re.compile(r"solve: (\d) - (\d) = (\d) , (\d) / (\d) = (\d) \.")
BOXED = re.compile(r"\\boxed\{(\d)\}")


def _rate(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def properties(traces: list[dict], problems: dict[str, dict]) -> dict:
    """Lookup accuracies and habits from two-turn traces (`id`, `y1`, `y2`, `r1`, `r2`)."""
    steps: dict[str, list[bool]] = {k: [] for k in ("product", "sum", "verdict", "difference", "quotient", "boxed")}
    changed = {"ok": [], "no": []}
    solved_after_no, solve_right, change_of_wrong_right, solve_t1 = [], [], [], []
    for trace in traces:
        p = problems[trace["id"]]
        a, b, t = p["a"], p["b"], p["t"]
        first, second = BOXED.search(trace["y1"]), BOXED.search(trace["y2"])
        solve_t1.append("solve:" in trace["y1"])
        check = CHECK.search(trace["y2"])
        if check is None or first is None or second is None:
            continue
        ca, cx, m, m2, cb, v, verdict = check.groups()
        if ca == str(a) and cx == first.group(1):
            steps["product"].append(int(m) == (a * int(cx)) % 10)
        if m2 == m and cb == str(b):
            steps["sum"].append(int(v) == (int(m) + b) % 10)
        steps["verdict"].append((verdict == "ok") == (int(v) == t))
        changed[verdict].append(first.group(1) != second.group(1))
        solve = SOLVE.search(trace["y2"])
        if verdict == "no":
            solved_after_no.append(solve is not None)
        if solve is not None:
            st, sb, c, c2, sa, x = solve.groups()
            if st == str(t) and sb == str(b):
                steps["difference"].append(int(c) == (t - b) % 10)
            if c2 == c and sa == str(a):
                steps["quotient"].append(int(x) == (int(c) * INVERSE[a]) % 10)
            steps["boxed"].append(second.group(1) == x)
            solve_right.append(trace["r2"] == 1.0)
        if trace["r1"] != 1.0 and first.group(1) != second.group(1):
            change_of_wrong_right.append(trace["r2"] == 1.0)
    return {
        **{f"{k}_right": _rate(v) for k, v in steps.items()},
        "p_change_after_ok": _rate(changed["ok"]),
        "p_change_after_no": _rate(changed["no"]),
        "p_solve_after_no": _rate(solved_after_no),
        "solve_right": _rate(solve_right),
        "change_of_wrong_right": _rate(change_of_wrong_right),
        "solve_at_turn1": _rate(solve_t1),
        "parsed": sum(len(v) for v in changed.values()) / len(traces),
    }


@dataclass
class PropertiesArguments:
    """Which model to measure, on which problems."""

    task: str | None = field(
        default=None,
        metadata={"help": f"Measure this variant's base (benchmarks/reproduce.py's tasks): {list(VARIANTS)}; "
                  "default: the demo's."},
    )  # fmt: skip
    model: str | None = field(default=None, metadata={"help": "Measure this model path instead (a trained stage)."})
    split: Literal["all", "train", "held_out"] = field(
        default="all", metadata={"help": "Problems: all 200, the 160 RL trains on, or the 40 held out."}
    )
    samples: int = field(default=8, metadata={"help": "Sampled two-turn traces per problem."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in VARIANTS:
            raise ValueError(f"--task {self.task!r}: choose among {list(VARIANTS)}.")
        if self.task is not None and self.model is not None:
            raise ValueError("--task and --model both name the model to measure: pass one.")


def main(args: PropertiesArguments) -> None:
    path = args.model or build_variant(VARIANTS[args.task or "default"])
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    rows = {"all": make_problems(), "train": split_problems()[0], "held_out": split_problems()[1]}[args.split]
    # sampled as the demo evaluates (its recipe's rendering, tokens per turn and decoding), in larger batches
    script_args, recipe_args, _ = parse_args(args=["--config", str(RECIPE)])
    settings = replace(eval_settings(script_args, recipe_args), batch_size=400)
    set_seed(args.seed)
    metrics, traces = evaluate(model, tokenizer, [r for r in rows for _ in range(args.samples)], "math", settings)
    result = {**metrics, **properties(traces, {p["id"]: p for p in make_problems()})}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    (properties_args,) = TrlParser((PropertiesArguments,)).parse_args_and_config()
    main(properties_args)

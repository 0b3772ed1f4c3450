r"""The embedded task's properties, measured on a base model before any RL (the table in docs/results.md).

    python benchmarks/base_properties.py                       # the demo's base, 200 problems x 8 sampled traces
    python benchmarks/base_properties.py --model outputs/score-embedded/stage2 --split train

Every lookup the model writes is checked against the one it should have computed from the numbers it wrote itself:
the check's product and sum, its verdict, the worked solve's difference and quotient, and whether the answer after a
solve is the quotient it reached. Then the habits: how often it changes its answer after an "ok" and after a "no",
how often it solves in steps after a "no", and what a change of a wrong first answer is worth.
"""

from __future__ import annotations

import argparse
import json
import re

from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from score_trl.data.embedded import EMBEDDED_INSTRUCTION, INVERSE, make_problems, split_problems
from score_trl.data.embedded_model import EmbeddedRecipe, build_base_model
from score_trl.evaluation import EvalSettings, evaluate


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="A model path (default: the demo's base, built if needed).")
    parser.add_argument("--split", choices=["all", "train", "held_out"], default="all")
    parser.add_argument("--samples", type=int, default=8, help="Sampled two-turn traces per problem.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = args.model or build_base_model(EmbeddedRecipe())
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    rows = {"all": make_problems(), "train": split_problems()[0], "held_out": split_problems()[1]}[args.split]
    settings = EvalSettings(instruction=EMBEDDED_INSTRUCTION, max_new_tokens=32, batch_size=400, do_sample=True)
    set_seed(args.seed)
    metrics, traces = evaluate(model, tokenizer, [r for r in rows for _ in range(args.samples)], "math", settings)
    result = {**metrics, **properties(traces, {p["id"]: p for p in make_problems()})}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()

"""Does SCoRe make a real model self-correct, and does it beat naive multi-turn RL? SmolLM2-135M-Instruct on the
arithmetic word problems (recipes/SmolLM2-135M-Instruct/score/config_arithmetic_lora.yaml), offline on a CPU.

    python benchmarks/real.py                          # the arms (base, naive RL, SCoRe), seed 0; resumes its runs
    python benchmarks/real.py --from_metrics           # the page from the committed metrics, no training
    python benchmarks/real.py --select_lr 3e-5 1e-4 3e-4 --select_steps 24   # choose the learning rate

Each arm is one run of examples/score_math.py in its own process, in `--runs_dir` (outside the repository, so that
a later session finds its checkpoints: a stopped run resumes where it stopped). What each run records
(`run_metrics.json`: settings, evaluations, training curves, wall times; no weights) is copied to
docs/results/smollm2/, with how often turn 2 drops the answer form, read from the run's traces; the table and the
curves in docs/results.md are rebuilt from those files.

- naive multi-turn RL: Stage II alone with alpha 0 (both turns rewarded, no shaping, no Stage I), for as many steps
  as SCoRe's two stages together, so both arms sample the same number of traces;
- SCoRe: Stage I then Stage II, as the recipe says. Both with the recipe's learning rate and seed.
The learning rate is chosen with `--select_lr` on the training problems' rewards (naive RL, short runs), never on
the held-out problems the table reports.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser


ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "SmolLM2-135M-Instruct" / "score" / "config_arithmetic_lora.yaml"
METRICS = ROOT / "docs" / "results" / "smollm2"
PAGE = ROOT / "docs" / "results.md"
CURVES = ROOT / "docs" / "results" / "smollm2_curves.png"
BEGIN, END = "<!-- smollm2-comparison:begin -->", "<!-- smollm2-comparison:end -->"
ARM_NAMES = {"naive": "naive multi-turn RL", "score": "SCoRe"}


@dataclass
class RealArguments:
    """Which arms and seeds run, and where."""

    arms: list[str] = field(default_factory=lambda: ["naive", "score"], metadata={"help": "Arms: naive, score."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds of every arm."})
    runs_dir: str = field(
        default=os.path.expanduser("~/.cache/score_trl/real"),
        metadata={"help": "Where the runs write checkpoints and traces (kept out of git)."},
    )
    from_metrics: bool = field(
        default=False, metadata={"help": "Only rebuild the page from docs/results/smollm2/*.json; train nothing."}
    )
    select_lr: list[float] = field(
        default_factory=list, metadata={"help": "Learning rates to compare on training rewards (naive RL runs)."}
    )
    select_steps: int = field(default=24, metadata={"help": "Training steps of each learning-rate run."})


def _recipe_value(name: str) -> str:
    match = re.search(rf"^{name}:\s*([^\s#]+)", RECIPE.read_text(), re.MULTILINE)
    return match.group(1)


def _arm_arguments(arm: str) -> list[str]:
    if arm == "score":
        return ["--stage", "both"]
    steps = int(_recipe_value("stage1_max_steps")) + int(_recipe_value("max_steps"))
    return ["--stage", "2", "--alpha", "0", "--max_steps", str(steps)]


def _train(name: str, arguments: list[str], opts: RealArguments) -> Path:
    """Run examples/score_math.py with the recipe and `arguments` into runs_dir/name (resuming what is there)."""
    out = Path(opts.runs_dir) / name
    command = [sys.executable, str(ROOT / "examples" / "score_math.py"), "--config", str(RECIPE)]
    command += ["--output_dir", str(out), *arguments]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return out


def _answer_form(traces_path: Path) -> dict[str, float]:
    """How often turn 2 has no answer the verifier can read, overall and where turn 1 had one."""
    from score_trl.rewards import extract_final_answer

    traces = [json.loads(line) for line in traces_path.read_text().splitlines() if line.strip()]
    readable = [(extract_final_answer(t["y1"]) is not None, extract_final_answer(t["y2"]) is not None) for t in traces]
    dropped = [not second for first, second in readable if first]
    return {
        "t1_unreadable": sum(not first for first, _ in readable) / len(readable),
        "t2_unreadable": sum(not second for _, second in readable) / len(readable),
        "t2_drops_form": sum(dropped) / max(len(dropped), 1),
    }


def _commit_metrics(name: str, out: Path) -> None:
    record = json.loads((out / "run_metrics.json").read_text())
    record["answer_form"] = {
        file.stem.removeprefix("eval_").removesuffix("_traces"): _answer_form(file)
        for file in sorted(out.glob("eval_*_traces.jsonl"))
    }
    METRICS.mkdir(parents=True, exist_ok=True)
    (METRICS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


def _mean_reward(curve: list[dict], key: str) -> float:
    values = [entry[key] for entry in curve if entry.get(key) is not None]
    return statistics.mean(values[len(values) // 2 :])  # the second half of the run


def select_learning_rate(opts: RealArguments) -> None:
    for lr in opts.select_lr:
        name = f"select_lr{lr:g}"
        arguments = _arm_arguments("naive") + ["--learning_rate", str(lr), "--max_steps", str(opts.select_steps)]
        # The held-out problems are not looked at: 8 are evaluated only because the pipeline evaluates.
        out = _train(name, arguments + ["--max_eval_samples", "8"], opts)
        _commit_metrics(name, out)
    print("| learning rate | turn-1 reward | turn-2 reward | answer changed when wrong | steps |")
    print("|---|---|---|---|---|")
    for file in sorted(METRICS.glob("select_lr*.json")):
        curve = json.loads(file.read_text())["curves"]["stage2"]
        cells = [
            _mean_reward(curve, key) for key in ("turn1/reward", "turn2/reward", "self_correction/changed_when_wrong")
        ]
        steps = max(entry.get("step", 0) for entry in curve)
        print(f"| {file.stem.removeprefix('select_lr')} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {steps} |")


def _row(name: str, metrics: dict, form: dict | None, wall: float | None) -> str:
    se = metrics.get("delta_se")
    cells = [
        f"{metrics['acc_t1']:.3f}",
        f"{metrics['acc_t2']:.3f}",
        f"{metrics['delta']:+.3f} ± {se:.3f}" if se is not None else f"{metrics['delta']:+.3f}",
        f"{metrics['delta_i2c']:.3f}",
        f"{metrics['delta_c2i']:.3f}",
        f"{metrics['changed_rate']:.3f}",
        f"{metrics.get('changed_when_wrong', float('nan')):.3f}",
        f"{form['t2_drops_form']:.3f}" if form else "",
        f"{wall / 60:.0f} min" if wall else "",
        str(metrics["n"]),
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def build_page() -> str:
    header = (
        "| model | acc_t1 | acc_t2 | delta ± se | i->c | c->i | answer changed | changed when wrong "
        "| turn 2 drops the form | wall (training + evaluations) | n |\n|" + "---|" * 11
    )
    rows, seeds = [], sorted({int(f.stem.rsplit("_s", 1)[1]) for f in METRICS.glob("*_s*.json")})
    for seed in seeds:
        runs = {arm: METRICS / f"{arm}_s{seed}.json" for arm in ARM_NAMES}
        runs = {arm: json.loads(path.read_text()) for arm, path in runs.items() if path.exists()}
        if not runs:
            continue
        first = next(iter(runs.values()))
        if "base" in first["evaluations"]:
            rows.append(
                _row(f"base (seed {seed})", first["evaluations"]["base"], first["answer_form"].get("base"), None)
            )
        for arm, record in runs.items():
            evaluations, form, wall = record["evaluations"], record["answer_form"], record["wall_s"]
            if arm == "score" and "stage I" in evaluations:
                rows.append(_row(f"Stage I (seed {seed})", evaluations["stage I"], form.get("stage1"), None))
            if "SCoRe" in evaluations:
                total = sum(wall.values())
                rows.append(_row(f"{ARM_NAMES[arm]} (seed {seed})", evaluations["SCoRe"], form.get("final"), total))
    return header + "\n" + "\n".join(rows)


def plot_curves() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("turn1/accuracy", "turn-1 accuracy"), ("turn2/accuracy", "turn-2 accuracy")]
    keys.append(("self_correction/changed_when_wrong", "answer changed when wrong"))
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for file in sorted(METRICS.glob("*_s*.json")):
        record, offset = json.loads(file.read_text()), 0
        for stage in ("stage1", "stage2"):
            curve = record["curves"].get(stage, [])
            for ax, (key, title) in zip(axes, keys, strict=True):
                points = [(offset + e["step"], e[key]) for e in curve if e.get(key) is not None]
                if points:
                    # Each log is 16 samples on 2-4 prompts: a running mean of 5 logs shows the trend.
                    steps, values = zip(*points, strict=True)
                    smooth = [statistics.mean(values[max(0, i - 4) : i + 1]) for i in range(len(values))]
                    style = "--" if stage == "stage1" else "-"
                    ax.plot(steps, smooth, style, label=f"{file.stem} {stage}")
                    ax.set_title(f"{title} (mean of 5 logs)")
                    ax.set_xlabel("step")
            offset += max((e.get("step", 0) for e in curve), default=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(CURVES, dpi=110)


def write_page() -> None:
    table = build_page()
    page = PAGE.read_text()
    block = f"{BEGIN}\n{table}\n\n![SmolLM2 training curves](results/{CURVES.name})\n{END}"
    if BEGIN in page:
        page = page[: page.index(BEGIN)] + block + page[page.index(END) + len(END) :]
    else:
        page += "\n" + block + "\n"
    PAGE.write_text(page)
    print(table)


def main(opts: RealArguments) -> None:
    if opts.select_lr:
        select_learning_rate(opts)
        return
    if not opts.from_metrics:
        for seed in opts.seeds:
            for arm in opts.arms:
                name = f"{arm}_s{seed}"
                out = _train(name, _arm_arguments(arm) + ["--seed", str(seed)], opts)
                _commit_metrics(name, out)
    if any(METRICS.glob("*_s*.json")):
        plot_curves()
        write_page()


if __name__ == "__main__":
    (real_args,) = TrlParser((RealArguments,)).parse_args_and_config()
    main(real_args)

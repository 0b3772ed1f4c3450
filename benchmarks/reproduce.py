"""The paper's comparison in miniature: every method, from the same base model, on the embedded tasks, over seeds.

    python benchmarks/reproduce.py              # 2 tasks x 8 arms x 3 seeds: about 62 minutes on 2 CPU cores
    python benchmarks/reproduce.py --quick      # one seed, short budgets: a few minutes
    make collapse                               # naive RL and SCoRe on two rare-correction bases (issue 20)

Arms (the paper's Tables 3 and 4): the base model prompted twice; STaR (D+) and Pair-SFT on TRL's SFTTrainer;
naive multi-turn RL (no Stage I, no shaping); SCoRe without Stage I; SCoRe without shaping; single-turn RL (TRL's
RLOOTrainer on turn 1, evaluated on two turns); full SCoRe. Every arm samples the same number of two-turn traces
(RL steps x batch) and is evaluated by the same code on the same held-out problems. Each finished (task, arm, seed)
is saved as JSON, so a rerun only does what is missing. The table, the command, the machine, the wall times and a
plot of the training curves go between markers in `--results_file` (docs/results.md for full runs), with a grid of
every arm's delta on every task when several tasks run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path


# Progress bars of parallel arms would interleave (each arm prints one line instead); tqdm reads this on import.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# reproduce_arms and variants are the sibling modules: run as `python benchmarks/reproduce.py`, this directory is first
# on the path (spawned workers inherit it), and the tests import them the same way (pyproject.toml's pytest
# `pythonpath`).
import torch  # noqa: E402
from reproduce_arms import ARMS, FULL_RUN_ARMS, FULL_RUN_TASKS, TASKS, ArmSettings, run_arm  # noqa: E402
from trl import TrlParser  # noqa: E402
from variants import ContinuedRecipe, build_variant  # noqa: E402


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
BEGIN, END = "<!-- reproduce.py: begin -->", "<!-- reproduce.py: end -->"
COLUMNS = [
    "acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "changed_rate", "changed_when_wrong", "fixed_when_changed",
    "edit_ratio",
]  # fmt: skip
RL_ARMS = [
    "naive", "score_no_stage1", "score_no_shaping", "single_turn", "score", "naive_turn_weights", "score_discount",
]  # fmt: skip
ABLATIONS = ["score_no_stage1", "score_no_shaping"]
# Longest arms first, so that two workers finish together.
ARMS_COST = {
    "score": 5, "score_no_shaping": 5, "score_discount": 5, "naive": 4, "naive_turn_weights": 4, "score_no_stage1": 4,
    "single_turn": 3, "pair_sft": 2,
}  # fmt: skip


@dataclass
class ReproduceArguments:
    """Which arms, tasks and seeds to run, and where the results go."""

    quick: bool = field(default=False, metadata={"help": "One seed and short budgets (a CI-size check)."})
    tasks: list[str] = field(
        default_factory=lambda: list(FULL_RUN_TASKS), metadata={"help": f"Tasks among {list(TASKS)}."}
    )
    arms: list[str] = field(
        default_factory=lambda: list(FULL_RUN_ARMS), metadata={"help": f"Arms among {list(ARMS)}."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds (--quick: the first)."})
    stage1_steps: int = field(default=150, metadata={"help": "Stage I steps (RL arms without it train this more)."})
    stage2_steps: int = field(default=250, metadata={"help": "Stage II steps."})
    alpha: float = field(default=3.0, metadata={"help": "Reward-shaping coefficient of the shaped arms."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of every RL and SFT arm."})
    eval_samples_per_problem: int = field(default=16, metadata={"help": "Sampled traces per held-out problem."})
    workers: int = field(default=2, metadata={"help": "Arms run in parallel, one torch thread each."})
    output_dir: str = field(default="outputs/reproduce", metadata={"help": "Per-arm models, logs and results."})
    results_file: str | None = field(
        default=None, metadata={"help": "Markdown file to write into (default: docs/results.md; --quick: output_dir)."}
    )

    def __post_init__(self):
        for name, chosen, known in (("tasks", self.tasks, TASKS), ("arms", self.arms, ARMS)):
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise ValueError(f"--{name}: unknown {unknown}; choose among {list(known)}.")
        if self.quick:
            self.seeds, self.stage1_steps, self.stage2_steps = self.seeds[:1], 30, 50
            self.eval_samples_per_problem = min(self.eval_samples_per_problem, 8)
            self.output_dir = self.output_dir.rstrip("/") + "-quick"
        if self.results_file is None:
            self.results_file = os.path.join(self.output_dir, "results.md") if self.quick else str(RESULTS)


def _job(task: str, arm: str, seed: int, settings: ArmSettings, out: str) -> dict:
    torch.set_num_threads(1)  # two single-threaded arms at once beat one two-threaded arm on this model
    result_path = Path(out) / "result.json"
    if result_path.exists():
        saved = json.loads(result_path.read_text())
        if saved.get("settings") == json.loads(json.dumps(dataclasses.asdict(settings))):  # same budgets: reuse it
            return {**saved, "reused": True}
    start = time.perf_counter()
    result = run_arm(task, arm, seed, settings, out)
    result.update(task=task, arm=arm, seed=seed, wall_s=time.perf_counter() - start)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def _build_bases(tasks: list[str], pool) -> None:
    """Every arm starts from its task's base, so all are built (or found) before any arm runs. The distinct
    pretrained roots share nothing and build in the pool; continued variants train on from a root that other tasks
    may share, so they follow one by one."""
    roots = {}
    for task in tasks:
        recipe = TASKS[task].recipe
        while isinstance(recipe, ContinuedRecipe):
            recipe = recipe.parent
        roots[recipe.key()] = recipe
    list((map if pool is None else pool.map)(build_variant, roots.values()))
    for task in tasks:
        TASKS[task].base_model()


def _mean_std(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def _metric(metrics: dict, key: str) -> float:
    if key == "fixed_when_changed":  # how often changing a wrong first answer made it right: i->c over changes
        changes = (1.0 - metrics["acc_t1"]) * metrics["changed_when_wrong"]
        return metrics["delta_i2c"] / changes if changes else 0.0
    return metrics[key]


def _stats(results: list[dict], task: str, arm: str, key: str) -> list[float]:
    return [_metric(r["metrics"], key) for r in results if r["task"] == task and r["arm"] == arm]


def _change_trend(results: list[dict], task: str, arm: str) -> tuple[str, float, float] | None:
    """How often the arm changed a wrong first answer on its training samples, over its first three logs and its
    last three (mean over seeds); None without curves. Results saved before that rate was recorded give the
    answer-changed rate instead, which also falls when turn 1 improves and right answers are kept."""
    runs = [r["curves"] for r in results if r["task"] == task and r["arm"] == arm]
    if not runs or any(len(c.get("changed_rate", [])) < 6 for c in runs):
        return None
    key = "changed_when_wrong" if all("changed_when_wrong" in c for c in runs) else "changed_rate"

    def mean(values: list[float]) -> float:
        return statistics.fmean([v for v in values if not math.isnan(v)] or [math.nan])

    return key, mean([mean(c[key][:3]) for c in runs]), mean([mean(c[key][-3:]) for c in runs])


def _verdict(results: list[dict], task: str, arms: list[str]) -> str:
    """The paper's three claims, each checked on the seeds run: SCoRe's delta beats every other arm's by more than
    both seed spreads; naive multi-turn RL's rate of changing its answers falls during training (the collapse)
    while SCoRe's does not; both ablations' mean deltas lie between naive RL's and SCoRe's. "Separates" needs all
    three, so every arm they name must have run, with two seeds or more. The arm with the fewest c->i is reported,
    not judged: an arm that hardly changes anything has few."""
    missing = [arm for arm in ("score", "naive", *ABLATIONS) if len(_stats(results, task, arm, "delta")) < 2]
    if missing:
        return f"(no verdict: {', '.join(missing)} not run with two seeds or more)"

    def band(arm: str) -> tuple[float, float]:
        values = _stats(results, task, arm, "delta")
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    score, score_spread = band("score")
    others = {arm: band(arm) for arm in arms if arm != "score" and _stats(results, task, arm, "delta")}
    beaten = [arm for arm, (mean, spread) in others.items() if score - score_spread > mean + spread]
    claims = [
        f"SCoRe's delta {score:+.3f} beats {len(beaten)} of {len(others)} other arms by more than the seed spreads"
        + (f" (not: {', '.join(a for a in others if a not in beaten)})" if len(beaten) < len(others) else "")
    ]
    passed = score > 0 and len(beaten) == len(others)

    naive_trend, score_trend = _change_trend(results, task, "naive"), _change_trend(results, task, "score")
    if naive_trend is None or score_trend is None:
        claims.append("no training curves to judge the collapse by")
        passed = False
    else:
        # 0.05 is about 1.5 standard errors of a rate near 0.5 averaged over three logs of 64 samples
        collapse = naive_trend[2] < naive_trend[1] - 0.05 and score_trend[2] >= score_trend[1] - 0.05
        claims.append(
            f"{naive_trend[0]} on training samples, first logs -> last: naive RL {naive_trend[1]:.2f} -> "
            f"{naive_trend[2]:.2f}, SCoRe {score_trend[1]:.2f} -> {score_trend[2]:.2f} "
            f"({'the' if collapse else 'no'} collapse of naive RL alone)"
        )
        passed &= collapse
    between = [arm for arm in ABLATIONS if others["naive"][0] <= others[arm][0] <= score]
    claims.append(f"{len(between)} of {len(ABLATIONS)} ablations between naive RL and SCoRe")
    passed &= len(between) == len(ABLATIONS)
    c2i = {arm: statistics.fmean(_stats(results, task, arm, "delta_c2i")) for arm in [*others, "score"]}
    claims.append(f"the fewest c->i: {min((a for a in c2i if a in RL_ARMS), key=c2i.get)}")
    return "; ".join(claims) + ". " + ("**SCoRe separates on this task.**" if passed else "**No clean separation.**")


def _plot(results: list[dict], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        for col, (key, label) in enumerate((("delta", "delta (t2 - t1)"), ("changed_rate", "answer changed"))):
            ax = axes[row][col]
            for arm, style in (("naive", "tab:red"), ("score_no_stage1", "tab:orange"), ("score", "tab:blue")):
                runs = [r["curves"] for r in results if r["task"] == task and r["arm"] == arm and r.get("curves")]
                for i, curve in enumerate(runs):
                    ax.plot(curve["step"], curve[key], color=style, alpha=0.8, label=ARMS[arm] if i == 0 else None)
            ax.set_title(f"{task}: {label} on training samples")
            ax.set_xlabel("RL step")
            ax.axhline(0.0, color="grey", linewidth=0.5)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reuse_note(results: list[dict]) -> str:
    reused = [r for r in results if r.get("reused")]
    if not reused:
        return ""
    arm_minutes = sum(r["wall_s"] for r in results) / 60
    return (
        f" ({len(reused)} of {len(results)} results reused from earlier runs in the output directory; the arms' own "
        f"wall times sum to {arm_minutes:.1f} min)"
    )


def _grid(results: list[dict], tasks: list[str], arms: list[str]) -> list[str]:
    """Every arm on every task at a glance: held-out delta, and how often a wrong first answer was changed on the
    training samples over the first three logs -> the last three (a collapse is that rate falling towards 0)."""
    lines = ["| arm | " + " | ".join(f"`{t}`" for t in tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for arm in arms:
        cells = []
        for task in tasks:
            deltas = _stats(results, task, arm, "delta")
            trend = _change_trend(results, task, arm)
            cell = _mean_std(deltas) if deltas else "-"
            # results saved before changed_when_wrong was recorded show the answer-changed rate, marked
            mark = "" if trend is None or trend[0] == "changed_when_wrong" else " changed"
            cells.append(cell + (f" ({trend[1]:.2f} -> {trend[2]:.2f}{mark})" if trend else ""))
        lines.append(f"| {ARMS[arm]} | " + " | ".join(cells) + " |")
    return lines


def write_results(results: list[dict], args: ReproduceArguments, command: str, wall_s: float) -> str:
    results_file = Path(args.results_file)
    figure = results_file.with_name("reproduce_curves.png")
    _plot(results, args.tasks, figure)
    lines = [
        BEGIN,
        "## Every method side by side (`benchmarks/reproduce.py`)",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {args.workers} arm(s) at a time with one thread each. Wall time {wall_s / 60:.1f} min"
        f"{_reuse_note(results)}. Seeds {args.seeds}; Stage I {args.stage1_steps} steps, Stage II {args.stage2_steps} "
        f"steps (RL arms without Stage I train {args.stage1_steps + args.stage2_steps}), 16 prompts x 4 samples, lr "
        f"{args.learning_rate}, alpha {args.alpha}; evaluation on the 40 held-out problems x "
        f"{args.eval_samples_per_problem} sampled two-turn traces. Cells are mean ± std over seeds.",
        "",
    ]
    if len(args.tasks) > 1:
        lines += [
            "Held-out delta per task (changed when wrong on training samples, first logs -> last):",
            "",
            *_grid(results, args.tasks, args.arms),
            "",
        ]
    for task in args.tasks:
        lines += [f"### Task `{task}`: {TASKS[task].description}", ""]
        lines.append("| arm | " + " | ".join(COLUMNS) + " | wall s |")
        lines.append("|---" * (len(COLUMNS) + 2) + "|")
        for arm in args.arms:
            if not _stats(results, task, arm, "delta"):
                continue
            cells = [_mean_std(_stats(results, task, arm, c)) for c in COLUMNS]
            wall = statistics.fmean(r["wall_s"] for r in results if r["task"] == task and r["arm"] == arm)
            lines.append(f"| {ARMS[arm]} | " + " | ".join(cells) + f" | {wall:.0f} |")
        lines += ["", _verdict(results, task, args.arms), ""]
    lines += [f"![delta and answer-changed rate over training]({figure.name})", "", END]
    block = "\n".join(lines)
    text = results_file.read_text() if results_file.exists() else "# Results\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(text)
    return block


def main(args: ReproduceArguments) -> None:
    start = time.perf_counter()
    settings = ArmSettings(
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        alpha=args.alpha,
        learning_rate=args.learning_rate,
        eval_samples_per_problem=args.eval_samples_per_problem,
    )
    order = sorted(args.arms, key=lambda a: -ARMS_COST.get(a, 0))
    jobs = [(t, a, s) for s in args.seeds for a in order for t in args.tasks]
    results = []
    with (
        ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
        if args.workers > 1
        else nullcontext() as pool
    ):
        _build_bases(args.tasks, pool)
        outs = [os.path.join(args.output_dir, t, a, f"seed-{s}") for t, a, s in jobs]
        if pool is None:  # in this process: easier to debug, and what the tests run
            done = (_job(*job, settings, out) for job, out in zip(jobs, outs, strict=True))
        else:
            done = (
                f.result()
                for f in [pool.submit(_job, *job, settings, out) for job, out in zip(jobs, outs, strict=True)]
            )
        for i, r in enumerate(done, 1):
            results.append(r)
            m = r["metrics"]
            print(
                f"[{i}/{len(jobs)}] {r['task']} {r['arm']} seed {r['seed']}: Acc@t1 {m['acc_t1']:.3f} "
                f"Acc@t2 {m['acc_t2']:.3f} delta {m['delta']:+.3f} c->i {m['delta_c2i']:.3f} ({r['wall_s']:.0f} s)",
                flush=True,
            )
    command = "python benchmarks/reproduce.py " + " ".join(sys.argv[1:])
    print(write_results(results, args, command.strip(), time.perf_counter() - start))


if __name__ == "__main__":
    (reproduce_args,) = TrlParser((ReproduceArguments,)).parse_args_and_config()
    main(reproduce_args)

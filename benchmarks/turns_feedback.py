"""Issue 31's measurements on the embedded task: three turns against two, and oracle feedback against none.

    python benchmarks/turns_feedback.py                 # 3 settings x (base, naive RL, SCoRe) x 3 seeds
    python benchmarks/turns_feedback.py --seeds 0       # one seed

Settings, each trained and evaluated the same way (the demo's base, recipe and budgets, `benchmarks/reproduce.py`):
- two turns, intrinsic: the paper's setting, the fixed instruction whatever the first attempt;
- two turns, feedback: the task's verifier feedback leads the instruction after a wrong (or unreadable) attempt
  (`no .`, the word the embedded model's own checks write; nothing after a right one);
- three turns, intrinsic, at the same sample budget: the same number of sampled attempts, so two thirds of the
  steps of each stage.
The table (mean ± std over seeds) and the training curves go between markers in docs/results.md. Each finished
(setting, arm, seed) is saved as JSON under --output_dir, so a rerun only does what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path


os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from reproduce import _build_bases, _job  # noqa: E402 (this directory is on sys.path when it runs)
from reproduce_arms import ArmSettings  # noqa: E402
from trl import TrlParser  # noqa: E402


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
FIGURE = RESULTS.parent / "results" / "turns_feedback_curves.png"
BEGIN, END = "<!-- turns_feedback.py: begin -->", "<!-- turns_feedback.py: end -->"
TWO = ArmSettings()
SETTINGS = {
    "2 turns, intrinsic": TWO,
    "2 turns, feedback": dataclasses.replace(TWO, feedback=True),
    # the same sampled attempts: 3 per episode instead of 2, so 2/3 of each stage's steps
    "3 turns, intrinsic": dataclasses.replace(
        TWO, num_turns=3, stage1_steps=TWO.stage1_steps * 2 // 3, stage2_steps=TWO.stage2_steps * 2 // 3
    ),
}
ARMS = {"base": "base", "naive": "naive multi-turn RL", "score": "SCoRe"}
COLUMNS = [
    "acc_t1", "acc_t2", "acc_t3", "delta", "delta_i2c", "delta_c2i", "delta_t2_t3", "changed_when_wrong",
    "feedback_rate",
]  # fmt: skip


@dataclass
class TurnsFeedbackArguments:
    """Which settings, arms and seeds to run, and where their results go."""

    settings: list[str] = field(default_factory=lambda: list(SETTINGS), metadata={"help": f"Among {list(SETTINGS)}."})
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"Among {list(ARMS)}."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Training and evaluation seeds."})
    workers: int = field(default=2, metadata={"help": "Arms run in parallel, one torch thread each."})
    output_dir: str = field(default="outputs/turns_feedback", metadata={"help": "Per-arm models and results."})
    results_file: str = field(default=str(RESULTS), metadata={"help": "Markdown file the table is written into."})

    def __post_init__(self):
        for name, chosen, known in (("settings", self.settings, SETTINGS), ("arms", self.arms, ARMS)):
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise ValueError(f"--{name}: unknown {unknown}; choose among {list(known)}.")


def _slug(setting: str) -> str:
    return setting.replace(", ", "_").replace(" ", "")


def _cell(results: list[dict], key: str) -> str:
    values = [r["metrics"][key] for r in results if key in r["metrics"]]
    if not values:
        return ""
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def table(results: list[dict]) -> list[str]:
    """One row per (arm, setting): mean ± std over seeds of the held-out metrics (delta: first turn against last;
    delta_t2_t3: what the third turn adds to the second)."""
    lines = ["| arm | setting | " + " | ".join(COLUMNS) + " | seeds |", "|---" * (len(COLUMNS) + 3) + "|"]
    for arm in ARMS:
        for setting in SETTINGS:
            runs = [r for r in results if r["arm"] == arm and r["setting"] == setting]
            if runs:
                cells = " | ".join(_cell(runs, key) for key in COLUMNS)
                lines.append(f"| {ARMS[arm]} | {setting} | {cells} | {len(runs)} |")
    return lines


def _nanmean(values) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("delta", "delta, last turn - turn 1"), ("changed_when_wrong", "answer changed when wrong"))
    fig, axes = plt.subplots(1, len(keys), figsize=(11, 3.4))
    colors = dict(zip(SETTINGS, ("tab:blue", "tab:green", "tab:purple"), strict=True))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for arm, style in (("naive", ":"), ("score", "-")):
            for setting, color in colors.items():
                runs = [r["curves"] for r in results if r["arm"] == arm and r["setting"] == setting and r["curves"]]
                if not runs:
                    continue
                mean = [_nanmean(values) for values in zip(*(c[key] for c in runs), strict=False)]
                ax.plot(runs[0]["step"][: len(mean)], mean, style, color=color, label=f"{ARMS[arm]}, {setting}")
        ax.set_title(f"{label} (training, mean of seeds)", fontsize=10)
        ax.set_xlabel("RL step (Stage I then Stage II for SCoRe)")
        ax.axhline(0.0, color="grey", linewidth=0.5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: list[dict], results_file: Path, command: str, wall_s: float) -> str:
    plot(results, FIGURE)
    block = "\n".join(
        [
            BEGIN,
            f"Command: `{command}`; {wall_s / 60:.1f} min wall, {len(results)} results "
            f"({sum(bool(r.get('reused')) for r in results)} reused from earlier runs; the arms' own wall times "
            f"sum to {sum(r['wall_s'] for r in results) / 60:.1f} min, on 2 workers).",
            "",
            *table(results),
            "",
            f"![training curves of the settings]({os.path.relpath(FIGURE, results_file.parent)})",
            END,
        ]
    )
    text = results_file.read_text() if results_file.exists() else "# Results\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    results_file.write_text(text)
    return block


def main(args: TurnsFeedbackArguments) -> None:
    start = time.perf_counter()
    jobs = [(setting, arm, seed) for seed in args.seeds for setting in args.settings for arm in args.arms]
    jobs.sort(key=lambda job: job[1] == "base")  # the trainings first, so that both workers finish together
    outs = [os.path.join(args.output_dir, _slug(s), a, f"seed-{seed}") for s, a, seed in jobs]
    results = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        _build_bases(["default"], None)
        futures = [
            pool.submit(_job, "default", a, seed, SETTINGS[s], out)
            for (s, a, seed), out in zip(jobs, outs, strict=True)
        ]
        for i, ((setting, arm, seed), future) in enumerate(zip(jobs, futures, strict=True), 1):
            result = {**future.result(), "setting": setting}
            results.append(result)
            m = result["metrics"]
            print(
                f"[{i}/{len(jobs)}] {setting} {arm} seed {seed}: Acc@t1 {m['acc_t1']:.3f} delta {m['delta']:+.3f} "
                f"({result['wall_s']:.0f} s)",
                flush=True,
            )
    command = "python benchmarks/turns_feedback.py " + " ".join(sys.argv[1:])
    print(write_results(results, Path(args.results_file), command.strip(), time.perf_counter() - start))


if __name__ == "__main__":
    (turns_feedback_args,) = TrlParser((TurnsFeedbackArguments,)).parse_args_and_config()
    main(turns_feedback_args)

"""benchmarks/real.py: the arms' settings, the answer-form counts, and the page rebuilt from committed metrics alone."""

import json
from pathlib import Path

import pytest
import real


ROOT = Path(__file__).resolve().parents[1]


def test_naive_rl_samples_as_many_traces_as_both_scores_stages():
    assert real._arm_arguments("score") == ["--stage", "both"]
    naive = real._arm_arguments("naive")
    steps = int(real._recipe_value("stage1_max_steps")) + int(real._recipe_value("max_steps"))
    assert naive == ["--stage", "2", "--alpha", "0", "--max_steps", str(steps)] and steps > 0


def test_answer_form_counts_turn_two_dropping_a_readable_answer(tmp_path):
    traces = [
        {"y1": "so \\boxed{5}", "y2": "The answer is 5."},  # dropped
        {"y1": "so \\boxed{5}", "y2": "so \\boxed{6}"},
        {"y1": "no answer", "y2": "no answer"},  # turn 1 unreadable: not counted as a drop
        {"y1": "Final Answer: The final answer is $4$. I hope it is correct.", "y2": "\\boxed{4}"},
    ]
    path = tmp_path / "eval_final_traces.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in traces))
    assert real._answer_form(path) == {
        "t1_unreadable": 0.25,
        "t2_unreadable": 0.5,
        "t2_drops_form": pytest.approx(1 / 3),
    }


def _metrics(acc_t1, acc_t2, se):
    return {
        "acc_t1": acc_t1, "acc_t2": acc_t2, "delta": acc_t2 - acc_t1, "delta_se": se, "delta_i2c": 0.1,
        "delta_c2i": 0.05, "changed_rate": 0.3, "changed_when_wrong": 0.4, "edit_ratio": 0.2, "n": 200,
    }  # fmt: skip


def test_the_page_is_rebuilt_from_the_committed_metrics(tmp_path, monkeypatch):
    metrics, page = tmp_path / "smollm2", tmp_path / "results.md"
    metrics.mkdir()
    page.write_text("# Results\n\nbefore\n")
    monkeypatch.setattr(real, "METRICS", metrics)
    monkeypatch.setattr(real, "PAGE", page)
    monkeypatch.setattr(real, "CURVES", tmp_path / "curves.png")
    curve = [{"step": s, "turn1/accuracy": 0.2, "turn2/accuracy": 0.1 * s, "loss": 0.1} for s in (2, 4)]
    form = {"t1_unreadable": 0.1, "t2_unreadable": 0.2, "t2_drops_form": 0.125}
    for arm, final in (("naive", _metrics(0.3, 0.25, 0.02)), ("score", _metrics(0.3, 0.41, 0.03))):
        evaluations = {"base": _metrics(0.3, 0.2, 0.01), "SCoRe": final}
        if arm == "score":
            evaluations["stage I"] = _metrics(0.3, 0.35, 0.02)
        record = {
            "evaluations": evaluations,
            "curves": {"stage2": curve},
            "wall_s": {"stage2": 1800.0, "eval base": 600.0},
            "answer_form": {"base": form, "stage1": form, "final": form},
        }
        (metrics / f"{arm}_s0.json").write_text(json.dumps(record))
    real.main(real.RealArguments(from_metrics=True))
    real.main(real.RealArguments(from_metrics=True))  # rebuilt in place, not appended twice
    text = page.read_text()
    assert text.startswith("# Results\n\nbefore\n") and text.count(real.BEGIN) == 1
    rows = [line for line in text.splitlines() if line.startswith("| ") and "seed 0" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| base (seed 0)", "| naive multi-turn RL (seed 0)", "| Stage I (seed 0)", "| SCoRe (seed 0)",
    ]  # fmt: skip
    assert "+0.110 ± 0.030" in rows[3] and "-0.050 ± 0.020" in rows[1] and "40 min" in rows[3]
    assert " 0.125 " in rows[3] and (tmp_path / "curves.png").stat().st_size > 0

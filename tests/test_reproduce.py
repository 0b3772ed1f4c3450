"""benchmarks/reproduce.py: the copy-prone base variant, the results page, and every arm end to end on a tiny base."""

import json
import random
import statistics
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from score_trl.data.embedded import make_problems, solver_trace
from score_trl.data.embedded_model import ContinuedRecipe, EmbeddedRecipe, build_base_model


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

TINY = EmbeddedRecipe(hidden_size=32, num_layers=1, pretrain_steps=120, batch_size=32)


def test_recipe_keys_name_every_field():
    # The cache is keyed by it: a changed field must build a new base model, never reuse a stale one.
    assert EmbeddedRecipe().key() == EmbeddedRecipe().key()
    assert EmbeddedRecipe(p_solve=0.5).key() != EmbeddedRecipe().key()
    assert EmbeddedRecipe(p_keep_wrong=0.5).key() != EmbeddedRecipe().key()
    assert ContinuedRecipe(p_keep=0.8).key() != ContinuedRecipe().key()
    assert ContinuedRecipe(p_keep_wrong=0.8).key() != ContinuedRecipe().key()


def test_solver_traces_follow_the_keep_probabilities():
    rng, problems = random.Random(0), make_problems()
    for _ in range(50):
        trace = solver_trace(rng.choice(problems), EmbeddedRecipe(p_keep=1.0, p_practice=0.0), rng)
        first, second = trace[1]["content"], trace[3]["content"]
        assert second.endswith(first.split()[-1])
    kept = sum(
        t[1]["content"].split()[-1] == t[3]["content"].split()[-1]
        for t in (
            solver_trace(rng.choice(problems), EmbeddedRecipe(p_keep=0.9, p_practice=0.0), rng) for _ in range(2000)
        )
    )
    assert 0.87 < kept / 2000 < 0.93
    for _ in range(200):  # keeps a right first answer, always changes a wrong one
        recipe = EmbeddedRecipe(p_keep=1.0, p_keep_wrong=0.0, p_practice=0.0)
        trace = solver_trace(rng.choice(problems), recipe, rng)
        problem_answer = trace[0]["content"]
        first, second = trace[1]["content"].split()[-1], trace[3]["content"].split()[-1]
        assert (first == second) == (first == f"\\boxed{{{_solve(problem_answer)}}}")


def _solve(prompt: str) -> int:
    _, a, _, _, _, b, _, t, _, _ = prompt.split()
    return next(x for x in range(10) if (int(a) * x + int(b)) % 10 == int(t))


def test_continued_recipe_trains_on_from_its_parent(tmp_path):
    parent = EmbeddedRecipe(hidden_size=16, num_layers=1, pretrain_steps=2, batch_size=4)
    path = Path(build_base_model(ContinuedRecipe(parent=parent, steps=2, p_keep=1.0), cache_dir=tmp_path))
    parent_path = tmp_path / f"embedded-{parent.key()}"
    assert (parent_path / "config.json").exists() and path != parent_path
    before, after = load_file(parent_path / "model.safetensors"), load_file(path / "model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert Path(build_base_model(ContinuedRecipe(parent=parent, steps=2, p_keep=1.0), cache_dir=tmp_path)) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt


def _result(task, arm, seed, delta, c2i=0.05):
    metrics = {c: 0.5 for c in ("acc_t1", "acc_t2", "delta_i2c", "changed_rate", "changed_when_wrong", "edit_ratio")}
    metrics.update(delta=delta, delta_c2i=c2i)
    curves = {"step": [10, 20], "delta": [0.0, delta], "changed_rate": [0.1, 0.2]}
    return {"task": task, "arm": arm, "seed": seed, "metrics": metrics, "curves": curves, "wall_s": 60.0}


def test_results_page_mean_std_verdict_and_markers(tmp_path):
    import reproduce

    results_file = tmp_path / "results.md"
    results_file.write_text("# Results\n\nhand-written text above\n")
    args = reproduce.ReproduceArguments(tasks=["copy"], arms=["naive", "score"], results_file=str(results_file))
    separated = [_result("copy", "score", s, d, 0.01) for s, d in enumerate([0.30, 0.32, 0.31])]
    separated += [_result("copy", "naive", s, d) for s, d in enumerate([0.0, 0.01, -0.01])]
    block = reproduce.write_results(separated, args, "python benchmarks/reproduce.py", 600.0)
    assert f"0.310 ± {statistics.stdev([0.30, 0.32, 0.31]):.3f}" in block
    assert "**SCoRe separates on this task.**" in block
    assert (tmp_path / "reproduce_curves.png").stat().st_size > 0

    overlapping = [_result("copy", "score", s, d) for s, d in enumerate([0.0, 0.2, 0.1])]
    overlapping += [_result("copy", "naive", s, d, 0.01) for s, d in enumerate([0.05, 0.1, 0.0])]
    block = reproduce.write_results(overlapping, args, "python benchmarks/reproduce.py", 600.0)
    assert "No clean separation" in block and "(not: naive)" in block and "naive's" in block
    text = results_file.read_text()
    assert text.count(reproduce.BEGIN) == 1 and "hand-written text above" in text and "separates" not in text


def test_unknown_arm_is_named():
    import reproduce

    with pytest.raises(ValueError, match="unknown \\['scorre'\\]"):
        reproduce.ReproduceArguments(arms=["scorre"])


def test_every_arm_end_to_end_on_a_tiny_base(tmp_path, monkeypatch):
    import reproduce
    import reproduce_arms

    monkeypatch.setenv("SCORE_TRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(reproduce_arms.TASKS, "tiny", reproduce_arms.Task("a tiny base", TINY))
    monkeypatch.setattr(reproduce_arms.ArmSettings, "logging_steps", 1)
    args = reproduce.ReproduceArguments(
        tasks=["tiny"], seeds=[0], stage1_steps=1, stage2_steps=1, eval_samples_per_problem=1, workers=1,
        output_dir=str(tmp_path / "out"), results_file=str(tmp_path / "results.md"),
    )  # fmt: skip
    reproduce.main(args)
    for arm in reproduce_arms.ARMS:
        result = json.loads((tmp_path / "out" / "tiny" / arm / "seed-0" / "result.json").read_text())
        assert result["metrics"]["n"] == 40, arm
        assert (tmp_path / "out" / "tiny" / arm / "seed-0" / "eval_traces.jsonl").exists()
    score = json.loads((tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").read_text())
    assert score["curves"]["step"] == [1, 2]  # Stage I's step, then Stage II's after it
    naive = json.loads((tmp_path / "out" / "tiny" / "naive" / "seed-0" / "result.json").read_text())
    assert naive["curves"]["step"][-1] == 2  # the same RL budget, all in one stage
    page = (tmp_path / "results.md").read_text()
    assert all(label in page for label in reproduce_arms.ARMS.values()) and "reproduce_curves.png" in page

    stamp = (tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").stat().st_mtime_ns
    reproduce.main(args)  # a rerun reuses every finished arm
    assert (tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").stat().st_mtime_ns == stamp

"""benchmarks/reproduce.py: the copy-prone base variant, the results page, and every arm end to end on a tiny base."""

import json
import random
import re
import statistics
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from variants import ContinuedRecipe, VariantHabits, build_variant, variant_solver_trace

from score_trl.embedded import EmbeddedRecipe
from score_trl.embedded.task import make_problems, solver_trace, worked_solution


ROOT = Path(__file__).resolve().parents[1]


TINY = EmbeddedRecipe(hidden_size=32, num_layers=1, pretrain_steps=120, batch_size=32)


def test_recipe_keys_name_every_field():
    # The cache is keyed by it: a changed field must build a new base model, never reuse a stale one, and an unchanged
    # recipe must keep its key, or every user's cached base (minutes to pretrain) would be built again.
    assert EmbeddedRecipe().key() == "3af359f87a3d"
    assert EmbeddedRecipe(p_solve=0.15, seed=0).key() == EmbeddedRecipe().key()  # the defaults, spelled out
    assert EmbeddedRecipe(p_solve=0.5).key() != EmbeddedRecipe().key()
    # the variants' keys, as before their habits moved here from the library's recipe
    assert ContinuedRecipe().key() == "3af359f87a3d-b035f4639d0f"
    rival = ContinuedRecipe(p_first_solve=0.2)
    assert replace(rival, first_solve_coefficients=(1, 9)).key() != rival.key()
    assert ContinuedRecipe(p_keep=0.8).key() != ContinuedRecipe().key()
    assert ContinuedRecipe(p_first_solve=0.2).key() != ContinuedRecipe().key()
    assert ContinuedRecipe(p_keep_wrong=0.8).key() != ContinuedRecipe().key()


def test_a_continuation_trains_on_its_parents_traces_with_its_changes():
    parent = EmbeddedRecipe(p_correct=0.3)
    traces = ContinuedRecipe(parent, p_keep=0.5, p_keep_wrong=None, p_first_solve=0.2, first_solve_coefficients=(1,))
    assert traces.traces() == VariantHabits(
        p_correct=0.3, p_keep=0.5, p_solve=0.15, p_practice=0.2, batch_size=64, p_keep_wrong=None,
        p_first_solve=0.2, first_solve_coefficients=(1,),
    )  # fmt: skip


def test_with_no_habit_set_a_variant_draws_the_librarys_traces():
    """The variant solver is the library's plus two habits that draw only when on: the default base's traces, and
    so its cache entry, are the same whichever draws them."""
    problems, recipe = make_problems(), EmbeddedRecipe()
    library, variant = random.Random(5), random.Random(5)
    for _ in range(300):
        problem = problems[library.randrange(len(problems))]
        assert variant_solver_trace(problems[variant.randrange(len(problems))], VariantHabits.of(recipe), variant) == (
            solver_trace(problem, recipe, library)
        )


def test_a_first_solve_is_right_and_checked_ok():
    rng, problems = random.Random(2), make_problems()
    habits = VariantHabits.of(EmbeddedRecipe(), p_first_solve=1.0)
    for _ in range(100):
        problem = rng.choice(problems)
        first, second = variant_solver_trace(problem, habits, rng)[1:4:2]
        assert first["content"] == f"{worked_solution(problem)} answer: \\boxed{{{problem['answer']}}}"
        assert ", ok ." in second["content"]


def test_the_first_solve_habit_covers_only_its_coefficients():
    rng, problems = random.Random(3), make_problems()
    habits = VariantHabits.of(EmbeddedRecipe(), p_first_solve=1.0, first_solve_coefficients=(1, 9))
    for problem in problems:
        first = variant_solver_trace(problem, habits, rng)[1]["content"]
        assert ("solve:" in first) == (problem["a"] in (1, 9)), (problem["id"], first)


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
        habits = VariantHabits.of(EmbeddedRecipe(p_keep=1.0, p_practice=0.0), p_keep_wrong=0.0)
        trace = variant_solver_trace(rng.choice(problems), habits, rng)
        problem_answer = trace[0]["content"]
        first, second = trace[1]["content"].split()[-1], trace[3]["content"].split()[-1]
        assert (first == second) == (first == f"\\boxed{{{_solve(problem_answer)}}}")


def _solve(prompt: str) -> int:
    _, a, _, _, _, b, _, t, _, _ = prompt.split()
    return next(x for x in range(10) if (int(a) * x + int(b)) % 10 == int(t))


def test_continued_recipe_trains_on_from_its_parent(tmp_path):
    parent = EmbeddedRecipe(hidden_size=16, num_layers=1, pretrain_steps=2, batch_size=4)
    path = Path(build_variant(ContinuedRecipe(parent=parent, steps=2, p_keep=1.0), cache_dir=tmp_path))
    parent_path = tmp_path / f"embedded-{parent.key()}"
    assert (parent_path / "config.json").exists() and path != parent_path
    before, after = load_file(parent_path / "model.safetensors"), load_file(path / "model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert Path(build_variant(ContinuedRecipe(parent=parent, steps=2, p_keep=1.0), cache_dir=tmp_path)) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt


FLAT, FALLING, RISING = (0.5,) * 6, (0.5, 0.5, 0.5, 0.2, 0.2, 0.2), (0.5, 0.5, 0.5, 0.6, 0.6, 0.6)


def _results(arm, deltas, changed_when_wrong=FLAT, c2i=0.05, task="copy"):
    """One result per seed, with a training curve of six logs."""
    out = []
    for seed, delta in enumerate(deltas):
        metrics = dict.fromkeys(
            ("acc_t1", "acc_t2", "delta_i2c", "changed_rate", "changed_when_wrong", "edit_ratio"), 0.5
        )
        metrics.update(delta=delta, delta_c2i=c2i)
        curves = {
            "step": [10 * (i + 1) for i in range(6)], "delta": [0.0] * 5 + [delta],
            "changed_rate": [0.3] * 6, "changed_when_wrong": list(changed_when_wrong),
        }  # fmt: skip
        out.append({"task": task, "arm": arm, "seed": seed, "metrics": metrics, "curves": curves, "wall_s": 60.0})
    return out


SEPARATED = {
    "score": dict(deltas=[0.30, 0.32, 0.31], changed_when_wrong=RISING, c2i=0.01),
    "naive": dict(deltas=[0.0, 0.01, -0.01], changed_when_wrong=FALLING),
    "score_no_stage1": dict(deltas=[0.10, 0.12, 0.11]),
    "score_no_shaping": dict(deltas=[0.15, 0.17, 0.16]),
}


def _verdict_of(tmp_path, **changes):
    import reproduce

    arms = {**SEPARATED, **changes}
    results = [r for arm, kw in arms.items() if kw is not None for r in _results(arm, **kw)]
    args = reproduce.ReproduceArguments(tasks=["copy"], arms=list(SEPARATED), results_file=str(tmp_path / "r.md"))
    return reproduce.write_results(results, args, "python benchmarks/reproduce.py", 600.0)


def test_the_verdict_needs_all_three_claims_and_names_the_one_that_fails(tmp_path):
    block = _verdict_of(tmp_path)
    assert f"0.310 ± {statistics.stdev([0.30, 0.32, 0.31]):.3f}" in block
    assert "beats 3 of 3 other arms" in block and "2 of 2 ablations between" in block
    # the collapse claim reads the curves: naive RL's first and last changed_when_wrong, then SCoRe's
    assert re.search(r"naive RL 0\.50 -> 0\.20\b.*SCoRe 0\.50 -> 0\.60\b", block)
    assert "(the collapse of naive RL alone)" in block and "the fewest c->i: score" in block
    assert "**SCoRe separates on this task.**" in block
    assert (tmp_path / "reproduce_curves.png").stat().st_size > 0

    # each claim failing alone: an ablation between, but within SCoRe's spread
    block = _verdict_of(tmp_path, score_no_shaping=dict(deltas=[0.29, 0.31, 0.30]))
    assert "(not: score_no_shaping)" in block and "2 of 2 ablations" in block and "(the collapse" in block
    assert "No clean separation" in block
    # naive RL that does not collapse
    block = _verdict_of(tmp_path, naive=dict(deltas=[0.0, 0.01, -0.01]))
    assert "beats 3 of 3" in block and "(no collapse of naive RL alone)" in block and "No clean separation" in block
    # an ablation below naive RL
    block = _verdict_of(tmp_path, score_no_stage1=dict(deltas=[-0.10, -0.09, -0.11]))
    assert "beats 3 of 3" in block and "1 of 2 ablations between" in block and "No clean separation" in block


def test_no_verdict_without_the_arms_seeds_or_curves_it_needs(tmp_path):
    one_seed = {arm: {**kw, "deltas": kw["deltas"][:1]} for arm, kw in SEPARATED.items()}
    assert "(no verdict: score, naive, score_no_stage1, score_no_shaping not run" in _verdict_of(tmp_path, **one_seed)
    assert "(no verdict: score_no_stage1 not run" in _verdict_of(tmp_path, score_no_stage1=None)
    # results saved before the changed-when-wrong curve existed: the answer-changed rate, named as such
    import reproduce

    results = [r for arm, kw in SEPARATED.items() for r in _results(arm, **kw)]
    for r in results:
        del r["curves"]["changed_when_wrong"]
    assert "changed_rate on training samples" in reproduce._verdict(results, "copy", list(SEPARATED))
    for r in results:
        r["curves"] = {k: v[:2] for k, v in r["curves"].items()}
    verdict = reproduce._verdict(results, "copy", list(SEPARATED))
    assert "no training curves" in verdict and "No clean separation" in verdict


def test_results_page_rewrites_only_its_block(tmp_path):
    import reproduce

    results_file = tmp_path / "results.md"
    results_file.write_text("# Results\n\nhand-written text above\n")
    args = reproduce.ReproduceArguments(tasks=["copy"], arms=list(SEPARATED), results_file=str(results_file))
    results = [r for arm, kw in SEPARATED.items() for r in _results(arm, **kw)]
    reproduce.write_results(results, args, "python benchmarks/reproduce.py", 600.0)
    results[0]["reused"] = True
    block = reproduce.write_results(results[:6], args, "python benchmarks/reproduce.py", 60.0)
    # this run's minute, the one result reused of six, and the six arms' own minutes
    assert re.search(r"Wall time 1\.0 min \(1 of 6 results reused\b.*\b6\.0 min\)", block)
    text = results_file.read_text()
    assert text.count(reproduce.BEGIN) == 1 and "hand-written text above" in text and text.endswith(block + "\n")


def test_the_rare_correction_bases_are_the_default_with_rarer_solves():
    from reproduce_arms import TASKS

    keys = {EmbeddedRecipe().key()}
    for task, p_solve in (("rare_0.05", 0.05), ("rare", 0.015), ("rare_0.005", 0.005)):
        recipe = TASKS[task].recipe
        assert recipe == replace(EmbeddedRecipe(), p_solve=p_solve) and recipe.key() not in keys  # own cache entry
        keys.add(recipe.key())


def test_the_grid_shows_every_arm_on_every_task(tmp_path):
    import reproduce

    results = _results("naive", [0.0, 0.02], FALLING) + _results("score", [0.30, 0.34], RISING)
    results += _results("naive", [0.50], FLAT, task="rare") + [
        {"task": "rare", "arm": "base", "seed": 0, "metrics": results[0]["metrics"], "curves": {}, "wall_s": 2.0}
    ]
    args = reproduce.ReproduceArguments(
        tasks=["copy", "rare"], arms=["base", "naive", "score"], results_file=str(tmp_path / "r.md")
    )
    block = reproduce.write_results(results, args, "python benchmarks/reproduce.py", 60.0)
    grid = block[block.index("Held-out delta per task") : block.index("### Task")]
    rows = {line.split(" | ")[0]: line for line in grid.splitlines() if line.startswith("| ") and "`" not in line}
    spread = statistics.stdev([0.30, 0.34])
    assert rows["| base (two-turn prompting)"] == "| base (two-turn prompting) | - | 0.000 |"
    assert rows["| naive multi-turn RL"] == (
        f"| naive multi-turn RL | 0.010 ± {statistics.stdev([0.0, 0.02]):.3f} (0.50 -> 0.20) | 0.500 (0.50 -> 0.50) |"
    )
    assert "| arm | `copy` | `rare` |" in grid
    assert rows["| SCoRe"] == f"| SCoRe | 0.320 ± {spread:.3f} (0.50 -> 0.60) | - |"
    # one task: no grid
    args = reproduce.ReproduceArguments(tasks=["copy"], arms=["naive", "score"], results_file=str(tmp_path / "r.md"))
    assert "Held-out delta per task" not in reproduce.write_results(results, args, "python x.py", 60.0)


def test_the_collapse_command_parses():
    """issue 20's side-by-side command; the full run's default arms stay the paper's."""
    import reproduce
    import reproduce_arms
    from trl import TrlParser

    parser = TrlParser((reproduce.ReproduceArguments,))
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    target = re.search(r"^collapse:.*\n((?:\t.*\\\n)*\t.*)", makefile, re.M)
    assert target, "the Makefile has no `collapse` target (README and docs/results.md name it)"
    command = target.group(1).replace("\\\n", " ").split()
    assert command[:2] == ["$(PYTHON)", "benchmarks/reproduce.py"]
    (args,) = parser.parse_args_and_config(args=command[2:])
    assert (args.tasks, args.arms, args.seeds, args.stage2_steps) == (
        ["rare_0.005", "rare"],
        ["base", "naive", "score"],
        [0],
        250,
    )
    assert args.results_file == "outputs/collapse/results.md"  # not docs/results.md
    (args,) = parser.parse_args_and_config(args=[])
    assert args.arms == reproduce_arms.FULL_RUN_ARMS and len(args.arms) == 8
    assert {"naive_turn_weights", "score_discount"} <= set(reproduce_arms.ARMS) - set(args.arms)


def test_bases_build_their_distinct_roots_in_the_pool_then_the_continuations(monkeypatch):
    """Continued variants share their root (rival and copy both continue default): built once, in the pool, before
    the continuations, which follow in this process; two workers never build one cache entry."""
    import reproduce
    import reproduce_arms

    built = []
    monkeypatch.setattr(reproduce, "build_variant", lambda recipe: built.append(("pool", recipe)) or "path")
    monkeypatch.setattr(reproduce_arms, "build_variant", lambda recipe: built.append(("main", recipe)) or "path")

    class Pool:
        def map(self, fn, items):
            return [fn(item) for item in items]

    tasks = ["default", "rival", "copy", "rare"]
    reproduce._build_bases(tasks, Pool())
    assert [r for where, r in built if where == "pool"] == [EmbeddedRecipe(), reproduce_arms.TASKS["rare"].recipe]
    assert [r for where, r in built if where == "main"] == [reproduce_arms.TASKS[t].recipe for t in tasks]


def test_unknown_arm_is_named():
    import reproduce

    with pytest.raises(ValueError, match="unknown \\['scorre'\\]"):
        reproduce.ReproduceArguments(arms=["scorre"])


def test_rl_arms_are_staged_as_the_pipeline_stages(tmp_path, monkeypatch):
    import reproduce_arms

    from score_trl import MultiTurnRLOOTrainer, StageOneTrainer

    built = []

    def build_trainer(cls, model, args, train, reward, feedback_func=None):
        assert feedback_func is None  # the arms run the intrinsic setting unless their settings ask for feedback
        built.append((cls, model, args))
        return SimpleNamespace(args=args)

    monkeypatch.setattr(reproduce_arms, "build_trainer", build_trainer)
    monkeypatch.setattr(reproduce_arms, "_train", lambda trainer, curves, offset=0: trainer.args.output_dir)
    settings = reproduce_arms.ArmSettings(stage1_steps=2, stage2_steps=3, alpha=3.0)
    reproduce_arms.TRAIN["score"]("BASE", None, str(tmp_path), 7, settings, {})
    (one, model1, stage1), (two, model2, stage2) = built
    assert (one, model1, two, model2) == (StageOneTrainer, "BASE", MultiTurnRLOOTrainer, str(tmp_path / "stage1"))
    assert stage1.turn_betas == [0.1, 0.01] and stage1.max_steps == 2 and stage1.seed == 7
    assert stage2.turn_betas == [0.01, 0.01] and stage2.max_steps == 3 and stage2.alpha == 3.0
    assert stage2.ref_model_name_or_path == "BASE"  # the KL to the base model, as the demo's pipeline keeps it
    built.clear()
    reproduce_arms.TRAIN["naive"]("BASE", None, str(tmp_path), 7, settings, {})
    ((cls, model, args),) = built  # the same RL budget, all in Stage II, unshaped
    assert (cls, model, args.max_steps, args.alpha, args.ref_model_name_or_path) == (
        MultiTurnRLOOTrainer,
        "BASE",
        5,
        0.0,
        "BASE",
    )


@pytest.mark.slow  # every arm trains: tests/test_rl_arms_are_staged_as_the_pipeline_stages covers the wiring fast
def test_every_arm_end_to_end_on_a_tiny_base(tmp_path, monkeypatch):
    import reproduce
    import reproduce_arms

    monkeypatch.setenv("SCORE_TRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(reproduce_arms.TASKS, "tiny", reproduce_arms.Testbed("a tiny base", TINY))
    monkeypatch.setattr(reproduce_arms.ArmSettings, "logging_steps", 1)
    args = reproduce.ReproduceArguments(
        tasks=["tiny"], arms=list(reproduce_arms.ARMS), seeds=[0], stage1_steps=1, stage2_steps=1,
        eval_samples_per_problem=1, workers=1, output_dir=str(tmp_path / "out"),
        results_file=str(tmp_path / "results.md"),
    )  # fmt: skip
    reproduce.main(args)
    for arm in reproduce_arms.ARMS:
        result = json.loads((tmp_path / "out" / "tiny" / arm / "seed-0" / "result.json").read_text())
        assert result["metrics"]["n"] == 40, arm
        assert (tmp_path / "out" / "tiny" / arm / "seed-0" / "eval_traces.jsonl").exists()
    score = json.loads((tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").read_text())
    assert score["curves"]["step"] == [1, 2]  # Stage I's step, then Stage II's after it
    assert len(score["curves"]["changed_when_wrong"]) == 2
    naive = json.loads((tmp_path / "out" / "tiny" / "naive" / "seed-0" / "result.json").read_text())
    assert naive["curves"]["step"][-1] == 2  # the same RL budget, all in one stage
    page = (tmp_path / "results.md").read_text()
    assert all(label in page for label in reproduce_arms.ARMS.values()) and "reproduce_curves.png" in page

    stamp = (tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").stat().st_mtime_ns
    reproduce.main(args)  # a rerun reuses every finished arm
    assert (tmp_path / "out" / "tiny" / "score" / "seed-0" / "result.json").stat().st_mtime_ns == stamp
    assert "10 of 10 results reused" in (tmp_path / "results.md").read_text()

    # issue 20's arms: Stage II with the turn weights or the discount; Stage I keeps the paper's returns
    def trained_args(arm, stage):
        return torch.load(tmp_path / "out" / "tiny" / arm / "seed-0" / stage / "training_args.bin", weights_only=False)

    alpha = args.alpha
    assert trained_args("naive_turn_weights", "stage2").turn_weights == [1.0, 1.0 + alpha]
    assert trained_args("naive_turn_weights", "stage2").alpha == 0.0
    assert trained_args("naive", "stage2").turn_weights == [1.0, 1.0]
    assert trained_args("score_discount", "stage2").turn_discount == 1.0
    assert trained_args("score_discount", "stage1").turn_discount == 0.0
    assert trained_args("score", "stage2").turn_discount == 0.0

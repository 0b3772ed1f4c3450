"""The embedded task (score_trl.embedded.task) and its base-model factory (score_trl.embedded.base_model)."""

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from score_trl.embedded.base_model import EmbeddedRecipe, base_model_path, build_base_model
from score_trl.embedded.task import (
    build_tokenizer,
    make_problems,
    practice_trace,
    second_attempt,
    solver_trace,
    worked_solution,
)
from score_trl.rewards import math_reward


def _problem(a: int, b: int, t: int) -> dict:
    return next(p for p in make_problems() if (p["a"], p["b"], p["t"]) == (a, b, t))


def test_worked_solution_by_hand():
    # 3 * x + 1 = 7 mod 10: 7 - 1 = 6, and 6 / 3 = 2 (3 * 2 = 6).
    assert worked_solution(_problem(3, 1, 7)) == "solve: 7 - 1 = 6 , 6 / 3 = 2 ."
    # 7 * x + 4 = 1 mod 10: 1 - 4 = 7 (mod 10), and 7 / 7 = 1.
    assert worked_solution(_problem(7, 4, 1)) == "solve: 1 - 4 = 7 , 7 / 7 = 1 ."
    for p in make_problems():
        assert worked_solution(p).split()[-2] == p["answer"]


def test_second_attempt_checks_then_solves():
    text = second_attempt(_problem(3, 1, 7), 4, 2, solve=True)
    assert text == r"check: 3 * 4 = 2 , 2 + 1 = 3 , no . solve: 7 - 1 = 6 , 6 / 3 = 2 . answer: \boxed{2}"
    assert second_attempt(_problem(3, 1, 7), 2, 2) == r"check: 3 * 2 = 6 , 6 + 1 = 7 , ok . answer: \boxed{2}"
    with pytest.raises(ValueError, match="reaches 2, not x2=5"):
        second_attempt(_problem(3, 1, 7), 4, 5, solve=True)


def test_solver_solves_only_after_a_no_and_then_is_right():
    rng, problems = random.Random(0), make_problems()
    recipe = EmbeddedRecipe(p_keep=0.0, p_solve=0.5, p_practice=0.0)
    solves_after_no, nos = 0, 0
    for _ in range(2000):
        problem = rng.choice(problems)
        trace = solver_trace(problem, recipe, rng)
        second = trace[3]["content"]
        if ", ok ." in second:
            assert "solve:" not in second
            continue
        nos += 1
        if "solve:" in second:
            solves_after_no += 1
            assert math_reward([None], [second], answer=[problem["answer"]]) == [1.0]
    assert 0.45 < solves_after_no / nos < 0.55


def test_practice_traces_always_solve_and_every_word_is_known():
    tokenizer, rng, problems = build_tokenizer(), random.Random(1), make_problems()
    recipe = EmbeddedRecipe(p_solve=1.0, p_keep=0.0)
    for _ in range(300):
        problem = rng.choice(problems)
        practice = practice_trace(problem, recipe, rng)
        assert worked_solution(problem) in practice[3]["content"]
        assert math_reward([None], [practice[3]["content"]], answer=[problem["answer"]]) == [1.0]
        for trace in (practice, solver_trace(problem, recipe, rng)):
            assert tokenizer.unk_token_id not in tokenizer.apply_chat_template(trace, tokenize=True)


def test_pretraining_learns_a_practice_trace_only_from_its_steps(monkeypatch):
    # Every row a practice trace: the labels must start after `solve:`, so the decision to solve is never taught.
    from score_trl.embedded import base_model as embedded_model

    recipe = EmbeddedRecipe(hidden_size=16, num_layers=1, batch_size=2, p_practice=1.0)
    tokenizer = build_tokenizer()
    model = embedded_model._new_model(recipe, tokenizer)
    seen = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda **kw: seen.append(kw) or original(**kw))
    embedded_model.pretrain(model, tokenizer, recipe, 1, 1e-3, 0)
    for ids, labels in zip(seen[0]["input_ids"].tolist(), seen[0]["labels"].tolist(), strict=True):
        learned = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
        assert learned.split()[1] == "-", learned  # "t - b = c , ..." onwards
        assert "check:" not in learned and "solve:" not in learned and learned.rstrip().endswith("<|im_end|>")


def test_pretraining_leaves_the_random_state_as_it_found_it(tmp_path):
    # The demo seeds once, then builds (or loads) the base, then samples its evaluation: both paths must sample alike.
    recipe = EmbeddedRecipe(hidden_size=16, num_layers=1, pretrain_steps=2, batch_size=4)
    torch.manual_seed(7)
    build_base_model(recipe, cache_dir=tmp_path)  # pretrains
    after_pretraining = torch.rand(3)
    torch.manual_seed(7)
    build_base_model(recipe, cache_dir=tmp_path)  # cached
    assert torch.equal(torch.rand(3), after_pretraining)


def test_a_cache_entry_made_twice_at_once_keeps_the_first_and_leaves_no_temporary_folder(tmp_path):
    """Two processes building the same base (two benchmark workers): the one that finishes second keeps the first's
    entry. Simulated in one process: the entry appears while `make` runs."""
    from score_trl.embedded import build_tokenizer, cached_model

    recipe = EmbeddedRecipe(hidden_size=16, num_layers=1, pretrain_steps=1, batch_size=4)
    first = Path(build_base_model(recipe, cache_dir=tmp_path))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    model = AutoModelForCausalLM.from_pretrained(first)

    def make_again():  # the other process already wrote the entry when this one saves
        return model, build_tokenizer()

    assert cached_model(first.name, make_again, {}, tmp_path) == str(first)  # found, not made
    # now force the race: the entry vanishes from view while this one builds, then reappears before the rename
    hidden = first.with_name("elsewhere")
    first.rename(hidden)

    def make_during_race():
        hidden.rename(first)
        return model, build_tokenizer()

    assert cached_model(first.name, make_during_race, {}, tmp_path) == str(first)
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # the first entry, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no .tmp-<pid> left behind


def test_the_task_names_its_base_model_and_a_quick_one_for_smoke_runs(monkeypatch):
    from score_trl.embedded import base_model
    from score_trl.tasks import TASKS

    built = []
    monkeypatch.setattr(base_model, "build_base_model", lambda recipe: built.append(recipe) or "path")
    assert TASKS["embedded"].base_model is base_model_path
    assert base_model_path() == base_model_path(quick=True) == "path"
    assert built == [EmbeddedRecipe(), EmbeddedRecipe(pretrain_steps=150)]

import json

import pytest
import torch
from transformers import AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer

from score_trl.baselines import pair_sft_dataset, star_dataset
from score_trl.baselines.script import BaselineArguments, run_baseline
from score_trl.rewards import REWARD_FUNCS
from score_trl.tasks import TASKS
from tests.conftest import task_with_rows


P = "Please fix it."
ROWS = [{"id": k, "prompt": [{"role": "user", "content": f"problem {k}"}]} for k in ("a", "b", "c", "d")]
TRACES = [
    {"id": "a", "y1": "a1-wrong", "y2": "a1-right", "r1": 0.0, "r2": 1.0},  # i->c
    {"id": "a", "y1": "a2-right", "y2": "a2-right-again", "r1": 1.0, "r2": 1.0},  # c->c
    {"id": "a", "y1": "a3-wrong", "y2": "a3-wrong-again", "r1": 0.0, "r2": 0.0},  # i->i
    {"id": "b", "y1": "b1-right", "y2": "b1-wrong", "r1": 1.0, "r2": 0.0},  # c->i
    {"id": "c", "y1": "c1-wrong", "y2": "c1-wrong-again", "r1": 0.0, "r2": 0.0},  # i->i
    {"id": "c", "y1": "c2-unjudged", "y2": "c2-right", "r1": None, "r2": 1.0},  # y1 unjudged: no pair from it
    {"id": "d", "y1": "d1-wrong", "y2": "d1-wrong-again", "r1": 0.0, "r2": 0.0},  # d has no correct response
]


def _firsts(dataset):
    return [(row["id"], row["prompt"][1]["content"], row["completion"][0]["content"]) for row in dataset]


def test_star_keeps_wrong_to_right():
    assert _firsts(star_dataset(TRACES, ROWS, P)) == [("a", "a1-wrong", "a1-right")]


def test_star_plus_also_keeps_right_to_right():
    assert _firsts(star_dataset(TRACES, ROWS, P, keep_correct=True)) == [
        ("a", "a1-wrong", "a1-right"),
        ("a", "a2-right", "a2-right-again"),
    ]


def test_star_pairs_are_conversational_prompt_completion():
    row = star_dataset(TRACES, ROWS, P)[0]
    assert row["prompt"] == [
        {"role": "user", "content": "problem a"},
        {"role": "assistant", "content": "a1-wrong"},
        {"role": "user", "content": P},
    ]
    assert row["completion"] == [{"role": "assistant", "content": "a1-right"}]


def test_pairs_show_each_problem_its_own_instruction():
    # an instruction that depends on the row, as a trainer's `get_turn_instruction` (EvalSettings.instruction_for)
    per_row = lambda row, turn, attempts=(): f"Fix problem {row['id']} at turn {turn}."  # noqa: E731
    star = star_dataset(TRACES, ROWS, per_row, keep_correct=True)
    pairs = pair_sft_dataset(TRACES, ROWS, per_row, include_correct=True)
    for row in [*star, *pairs]:
        assert row["prompt"][2]["content"] == f"Fix problem {row['id']} at turn 2."


def test_pair_sft_pairs_wrong_attempts_with_a_correct_response_of_the_same_problem():
    correct_a = {"a1-right", "a2-right", "a2-right-again"}  # every correct first or second attempt of problem a
    pairs = _firsts(pair_sft_dataset(TRACES, ROWS, P, seed=3))
    # a1, a3 and c1 are wrong first attempts; d1 too, but d has no correct response anywhere
    assert [(i, y1) for i, y1, _ in pairs] == [("a", "a1-wrong"), ("a", "a3-wrong"), ("c", "c1-wrong")]
    assert pairs[0][2] in correct_a and pairs[1][2] in correct_a
    assert pairs[2][2] == "c2-right"  # c's only correct response is a second attempt


def test_pair_sft_plus_adds_right_first_attempts():
    pairs = _firsts(pair_sft_dataset(TRACES, ROWS, P, include_correct=True, seed=3))
    assert [(i, y1) for i, y1, _ in pairs] == [
        ("a", "a1-wrong"),
        ("a", "a2-right"),
        ("a", "a3-wrong"),
        ("b", "b1-right"),
        ("c", "c1-wrong"),
    ]
    assert pairs[3][2] == "b1-right"  # b's only correct response


def test_pair_sft_draws_targets_at_random_but_reproducibly():
    targets = {tuple(_firsts(pair_sft_dataset(TRACES, ROWS, P, seed=s))) for s in range(20)}
    assert len(targets) > 1
    assert _firsts(pair_sft_dataset(TRACES, ROWS, P, seed=5)) == _firsts(pair_sft_dataset(TRACES, ROWS, P, seed=5))


def test_sft_step_trains_only_the_second_attempt(tmp_path, tiny_model_path):
    dataset = star_dataset(TRACES, ROWS, P, keep_correct=True).remove_columns("id")
    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-2, use_cpu=True,
        bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    trainer = SFTTrainer(tiny_model_path, args=args, train_dataset=dataset, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        trained = tokenizer.decode(ids[labels != -100])
        assert trained.startswith("a") and "right" in trained and "problem" not in trained and P not in trained
        assert "wrong" not in trained  # y1 is context only
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


@pytest.mark.parametrize("method", ["STaR", "Pair-SFT"])
def test_baseline_script_end_to_end_on_a_tiny_model(tmp_path, tiny_model_path, monkeypatch, method):
    """Sample, pair, SFT, evaluate before and after: the script's whole flow, a step of SFT."""
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(4)]
    monkeypatch.setitem(TASKS, "math", task_with_rows("math", rows, rows[:2]))
    # every first attempt wrong and every second right, so that both baselines find pairs whatever the model writes
    turn_two = lambda prompts, completions, **kw: [float(sum(m["role"] == "user" for m in p) > 1) for p in prompts]  # noqa: E731
    monkeypatch.setitem(REWARD_FUNCS, "math", turn_two)
    args = BaselineArguments(
        task="math", iterations=1, samples_per_problem=1, sample_max_new_tokens=4, eval_max_new_tokens=4,
        instruction="Try once more.",
    )  # fmt: skip
    sft_args = SFTConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, use_cpu=True, bf16=False,
        activation_checkpointing=False, report_to="none", save_strategy="no",
    )  # fmt: skip
    results = run_baseline(method, args, sft_args, ModelConfig(model_name_or_path=tiny_model_path))
    assert list(results) == ["base", method] and results[method]["acc_t2"] == 1.0
    pairs_file = next(tmp_path.rglob("*pairs.jsonl"))
    assert all(
        json.loads(line)["prompt"][2]["content"] == "Try once more." for line in pairs_file.read_text().splitlines()
    )
    assert len((tmp_path / "eval_final_traces.jsonl").read_text().splitlines()) == 2

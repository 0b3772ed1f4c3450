"""What the trainers mask, log and refuse: per-turn truncation masks, logs that describe what trains, settings that
would be ignored, arguments passed through to GRPOTrainer, and the KL reference model."""

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_trl import MultiTurnRLOOTrainer, StageOneConfig
from score_trl.tiny_model import save_tiny_model

from .test_trainers import make_args


ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(2)]


def scripted_trainer(tmp_path, model_path, attempts, reward, **overrides):
    """A trainer whose rollout answers `attempts[turn][sample]` (token ids) instead of sampling."""
    args = make_args(tmp_path, num_generations=2, per_device_train_batch_size=4, **overrides)
    trainer = MultiTurnRLOOTrainer(model_path, reward, args=args, train_dataset=Dataset.from_list(ROWS))
    calls = []

    def generate(prompt_ids, num_generations):
        calls.append(len(calls))
        return [list(a) for a in attempts[len(calls) - 1]], None

    trainer._generate_ids = generate
    trainer.model.train()
    return trainer


def batch():
    return [ROWS[0], ROWS[0], ROWS[1], ROWS[1]]


def test_truncation_masks_each_turn_on_its_own(tmp_path, tiny_model_path):
    eos = 1  # the kit's <|im_end|>
    done, cut = [7, 8, eos], [7, 8, 9]
    # sample 0: truncated first attempt, finished second; sample 1: finished first, truncated second
    attempts = [[cut, done, done, done], [done, cut, done, done]]

    def reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    for mask_truncated in (True, False):
        trainer = scripted_trainer(
            tmp_path, tiny_model_path, attempts, reward, mask_truncated_completions=mask_truncated
        )
        out = trainer._generate_and_score_completions(batch())
        labels, loss_mask = out["turn_labels"], out["completion_mask"] * out["tool_mask"]
        trained = [{t for t in (1, 2) if loss_mask[i][labels[i] == t].all()} for i in range(4)]
        if mask_truncated:
            assert trained == [{2}, {1}, {1, 2}, {1, 2}]
        else:
            assert trained == [{1, 2}] * 4
        assert (out["completion_mask"][labels > 0] == 1).all()  # truncated attempts stay visible to later turns


def test_logs_describe_what_trains(tmp_path, tiny_model_path):
    eos = 1
    attempts = [[[5, eos], [6, eos], [5, eos], [7, 8, 9]], [[5, eos], [6, 6, eos], [5, eos], [6, eos]]]

    # reward: 1.0 when the attempt has 2 tokens, else 0.0 -> r1 = [1, 1, 1, 0], r2 = [1, 0, 1, 1]
    def reward(prompts, completions, completion_ids, **kwargs):
        return [float(len(ids) == 2) for ids in completion_ids]

    trainer = scripted_trainer(tmp_path, tiny_model_path, attempts, reward, alpha=2.0)
    trainer._generate_and_score_completions(batch())
    metrics = trainer._metrics["train"]
    for key in ("reward", "reward_std", "frac_reward_zero_std", "completions/clipped_ratio", "rewards/reward/mean"):
        assert key not in metrics, key  # TRL's last-turn-only values, replaced by per-turn ones
    r1, r2 = torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    returns = torch.stack([r1, r2 + 2.0 * (r2 - r1)], dim=1)  # [[1, 1], [1, -2], [1, 1], [0, 3]]
    loo = (returns.view(2, 2, 2) - returns.view(2, 2, 2).flip(1)).view(4, 2)  # two samples: the other one's return
    assert metrics["turn1/reward"] == [pytest.approx(0.75)] and metrics["turn2/reward"] == [pytest.approx(0.75)]
    assert metrics["turn1/reward_std"] == [pytest.approx(r1.std().item())]
    assert metrics["turn2/return"] == [pytest.approx(0.75)]
    assert metrics["turn1/frac_return_zero_std"] == [0.5] and metrics["turn2/frac_return_zero_std"] == [0.0]
    assert metrics["turn1/clipped_ratio"] == [0.25] and metrics["turn2/clipped_ratio"] == [0.0]
    assert metrics["turn2/rewards/reward/mean"] == [pytest.approx(0.75)]
    assert list(trainer._logs["advantages"]) == pytest.approx(loo[:, 1].tolist())  # the loss's, last turn
    assert list(trainer._logs["extra"]["turn1/advantage"]) == pytest.approx(loo[:, 0].tolist())
    assert list(trainer._logs["extra"]["turn2/reward"]) == pytest.approx(r2.tolist())
    assert metrics["self_correction/changed_when_wrong"] == [pytest.approx(1.0)]  # sample 3: wrong, then changed


def test_turn_discount_and_weights_reach_the_loss_and_the_logs(tmp_path, tiny_model_path):
    eos = 1
    attempts = [[[5, eos], [6, eos], [5, eos], [7, 8, 9]], [[5, eos], [6, 6, eos], [5, eos], [6, eos]]]

    def reward(prompts, completions, completion_ids, **kwargs):  # r1 = [1, 1, 1, 0], r2 = [1, 0, 1, 1]
        return [float(len(ids) == 2) for ids in completion_ids]

    trainer = scripted_trainer(
        tmp_path, tiny_model_path, attempts, reward, alpha=2.0, turn_discount=0.5, turn_weights=[1.0, 3.0]
    )
    out = trainer._generate_and_score_completions(batch())
    # turn 2: r2 + 2 (r2 - r1) = [1, -2, 1, 3]; turn 1: r1 + 0.5 * that = [1.5, 0, 1.5, 1.5]
    # leave-one-out over two samples (the other's return), then turn 2's advantages times 3
    expected = {1: [1.5, -1.5, 0.0, 0.0], 2: [9.0, -9.0, -6.0, 6.0]}
    for turn, values in expected.items():
        for i, value in enumerate(values):
            assert (out["advantages"][i][out["turn_labels"][i] == turn] == value).all(), (turn, i)
    metrics = trainer._metrics["train"]
    assert metrics["turn1/return"] == [pytest.approx(1.125)] and metrics["turn2/return"] == [pytest.approx(0.75)]
    assert metrics["turn1/advantage_abs"] == [pytest.approx(0.75)]
    assert metrics["turn2/advantage_abs"] == [pytest.approx(7.5)]
    assert list(trainer._logs["extra"]["turn2/advantage"]) == pytest.approx(expected[2])  # the weighted ones


def test_changed_when_wrong_is_undefined_without_wrong_first_attempts(tmp_path, tiny_model_path):
    eos = 1
    attempts = [[[5, eos]] * 4, [[6, eos]] * 4]

    def reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    trainer = scripted_trainer(tmp_path, tiny_model_path, attempts, reward)
    trainer._generate_and_score_completions(batch())
    metrics = trainer._metrics["train"]
    assert "self_correction/changed_when_wrong" not in metrics  # undefined: not logged (0.0 would read as collapse)
    assert metrics["self_correction/changed_rate"] == [1.0]


def test_the_instruction_hook_gets_the_row_and_the_earlier_attempts(tmp_path, tiny_model_path):
    """Called between the turns, per sample: an instruction may answer the attempt (feedback) without a redesign."""
    eos = 1
    attempts = [[[5, eos], [6, eos], [7, eos], [8, eos]], [[9, eos]] * 4]
    trainer = scripted_trainer(tmp_path, tiny_model_path, attempts, lambda completions, **kw: [1.0] * len(completions))
    seen = []

    def answering(example, turn, attempts=()):
        seen.append((example["answer"], turn, list(attempts)))
        return f"You wrote {attempts[-1]}"

    trainer.get_turn_instruction = answering
    out = trainer._generate_and_score_completions(batch())
    texts = trainer.processing_class.batch_decode([a[:-1] for a in attempts[0]])
    assert seen == [(row["answer"], 2, [text]) for row, text in zip(batch(), texts, strict=True)]
    for i, text in enumerate(texts):  # each sample was shown its own
        instruction = out["completion_ids"][i][out["turn_labels"][i] == 0]
        assert f"You wrote {text}" in trainer.processing_class.decode(instruction)
    assert trainer._batch.rollout.instructions == [[f"You wrote {text}" for text in texts]]


def test_the_answer_format_is_a_config_field(tmp_path, tiny_model_path):
    """'math' compares final answers, 'code' whole texts: two attempts that end in the same answer changed as code."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ids = lambda text: [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]  # noqa: E731
    attempts = [[ids("It is \\boxed{4}.")] * 4, [ids("So: \\boxed{4}")] * 4]  # other texts, the same answer
    reward = lambda completions, **kw: [1.0] * len(completions)  # noqa: E731
    rates = {}
    for answer_format in ("math", "code"):
        trainer = scripted_trainer(tmp_path, tiny_model_path, attempts, reward, answer_format=answer_format)
        trainer._generate_and_score_completions(batch())
        rates[answer_format] = trainer._metrics["train"]["self_correction/changed_rate"]
    assert rates == {"math": [0.0], "code": [1.0]}


class TestConfigRefusesIgnoredSettings:
    def test_stage_one_has_no_shaping(self, tmp_path):
        assert make_args(tmp_path, StageOneConfig).alpha == 0.0
        with pytest.raises(ValueError, match="alpha=3.0: Stage I shapes no reward.*Stage II's"):
            make_args(tmp_path, StageOneConfig, alpha=3.0)

    def test_an_empty_instruction(self, tmp_path):
        with pytest.raises(ValueError, match="turn_instruction=' ' shows the model nothing"):
            make_args(tmp_path, turn_instruction=" ")

    def test_an_unknown_answer_format(self, tmp_path):
        with pytest.raises(ValueError, match=r"answer_format='units': use one of \['code', 'math'\]"):
            make_args(tmp_path, answer_format="units")

    def test_scale_rewards(self, tmp_path):
        with pytest.raises(ValueError, match="scale_rewards='group'.*leave-one-out"):
            make_args(tmp_path, scale_rewards="group")

    def test_multi_objective_aggregation(self, tmp_path):
        with pytest.raises(ValueError, match="multi_objective_aggregation='normalize_then_sum'"):
            make_args(tmp_path, multi_objective_aggregation="normalize_then_sum")

    def test_beta_conflicting_with_turn_betas(self, tmp_path):
        with pytest.raises(ValueError, match="beta=0.5 conflicts with turn_betas"):
            make_args(tmp_path, StageOneConfig, beta=0.5)
        assert make_args(tmp_path, StageOneConfig, beta=0.1).beta == 0.1  # the same value is no conflict
        assert make_args(tmp_path, StageOneConfig).beta == 0.1


def test_grpo_trainer_arguments_pass_through(tmp_path, tiny_model_path):
    """`quantization_config` (QLoRA) reaches GRPOTrainer: it sees it beside the config's own and refuses both."""
    args = make_args(tmp_path, model_init_kwargs={"quantization_config": {"load_in_4bit": True}})
    with pytest.raises(ValueError, match="`quantization_config` both as a trainer argument"):
        MultiTurnRLOOTrainer(
            tiny_model_path, lambda **kw: [], args=args, train_dataset=Dataset.from_list(ROWS), quantization_config={}
        )


def _same_weights(model, other) -> bool:
    theirs = dict(other.named_parameters())
    return all(torch.equal(p, theirs[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("in_memory", [False, True], ids=["path", "object"])
def test_reference_model_is_the_one_named(tmp_path, tiny_model_path, in_memory):
    other = save_tiny_model(tmp_path / "other", seed=1)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path) if in_memory else tiny_model_path
    args = make_args(tmp_path, ref_model_name_or_path=other)
    trainer = MultiTurnRLOOTrainer(policy, lambda **kw: [], args=args, train_dataset=Dataset.from_list(ROWS))
    initial, reference = (AutoModelForCausalLM.from_pretrained(p) for p in (tiny_model_path, other))
    assert _same_weights(trainer.ref_model, reference) and not _same_weights(trainer.ref_model, initial)
    assert _same_weights(trainer.model, initial)
    assert trainer.model.config._name_or_path == tiny_model_path  # the policy keeps its own name (model card, hub)

    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path) if in_memory else tiny_model_path
    default = MultiTurnRLOOTrainer(
        policy, lambda **kw: [], args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS)
    )
    assert _same_weights(default.ref_model, initial)  # unset: the weights training starts from


def test_evaluation_during_training_with_a_larger_eval_batch(tmp_path, tiny_model_path):
    """An evaluation batch larger than the completions table's deque (`generation_batch_size`) still logs."""
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}]} for i in range(12)]
    args = make_args(
        tmp_path, max_steps=1, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=12, log_completions=True
    )
    dataset = Dataset.from_list(rows)
    trainer = MultiTurnRLOOTrainer(
        tiny_model_path, lambda completions, **kw: [1.0] * len(completions), args=args, train_dataset=dataset,
        eval_dataset=dataset,
    )  # fmt: skip
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_turn2/reward" in h]
    assert logged and logged[0]["eval_turn2/reward"] == 1.0
    assert len(trainer._logs["advantages"]) == len(trainer._logs["prompt"])  # the table's columns line up

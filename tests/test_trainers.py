import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer
from score_trl.rewards import completion_text


TURN_METRICS = [
    "turn1/reward",
    "turn2/reward",
    "turn1/accuracy",
    "turn2/accuracy",
    "turn1/kl",
    "turn2/kl",
    "self_correction/delta",
    "self_correction/delta_i2c",
    "self_correction/delta_c2i",
    "self_correction/changed_rate",
    "self_correction/edit_ratio",
]


def varied_reward(prompts, completions, **kwargs):
    """A toy reward that varies between samples, so advantages are non-zero: the attempt's length mod 3."""
    return [float(len(completion_text(c)) % 3) for c in completions]


def make_args(tmp_path, config_cls=MultiTurnRLOOConfig, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        num_generations=3,
        per_device_train_batch_size=6,
        max_completion_length=6,
        max_steps=2,
        learning_rate=0.05,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    values.update(overrides)
    return config_cls(**values)


@pytest.fixture
def dataset():
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(6)]
    return Dataset.from_list(rows)


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    "trainer_cls,config_cls", [(StageOneTrainer, StageOneConfig), (MultiTurnRLOOTrainer, MultiTurnRLOOConfig)]
)
def test_trainer_trains_and_logs(tmp_path, dataset, tiny_model_path, trainer_cls, config_cls):
    trainer = trainer_cls(tiny_model_path, varied_reward, args=make_args(tmp_path, config_cls), train_dataset=dataset)
    before = _params(trainer.model)
    trainer.train()
    assert "train_loss" in trainer.state.log_history[-1]
    logged = trainer.state.log_history[0]
    for key in TURN_METRICS:
        assert key in logged and math.isfinite(logged[key]), key
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "no parameter moved"


def test_model_object_trains_with_kl(tmp_path, dataset, tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model.config._name_or_path = ""  # as for a model built in memory: TRL alone would fail to rebuild the reference
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    args = make_args(tmp_path)
    trainer = MultiTurnRLOOTrainer(model, varied_reward, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.beta == pytest.approx(0.01) and trainer.ref_model is not None
    ref_before = _params(trainer.ref_model)
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    assert all(torch.equal(p, ref_before[n]) for n, p in trainer.ref_model.named_parameters())
    assert max(h.get("turn1/kl", 0.0) for h in trainer.state.log_history) > 0  # the policy left its frozen copy


def test_advantages_are_per_turn_and_zero_on_the_instruction(tmp_path, dataset, tiny_model_path):
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=make_args(tmp_path), train_dataset=dataset)
    trainer.model.train()
    batch = [row for row in dataset.select(range(2)) for _ in range(3)]
    out = trainer._generate_and_score_completions(batch)
    labels, advantages = out["turn_labels"], out["advantages"]
    assert advantages.shape == labels.shape == out["completion_ids"].shape
    assert (advantages[labels == 0] == 0).all()
    assert ((labels == 0) == (out["tool_mask"] == 0) | (out["completion_mask"] == 0)).all()
    # recompute the leave-one-out advantages by hand from the logged per-turn rewards
    rewards = trainer._batch.rewards_per_func[..., 0]  # (6, 2), one reward function
    r1, r2 = rewards[:, 0], rewards[:, 1]
    returns = torch.stack([r1, r2 + 10.0 * (r2 - r1)], dim=1).view(2, 3, 2)
    expected = returns - (returns.sum(1, keepdim=True) - returns) / 2
    for i in range(6):
        for turn in (1, 2):
            tokens = advantages[i][labels[i] == turn]
            assert torch.allclose(tokens, expected.view(6, 2)[i, turn - 1].expand_as(tokens))


def test_per_turn_kl_weights_in_trls_loss(tmp_path, dataset, tiny_model_path):
    """The loss equals sum(mask * (-A + beta_turn * k3)) / sum(mask), beta_turn read per token from its turn."""
    args = make_args(tmp_path, StageOneConfig, turn_betas=[0.5, 0.02], loss_type="bnpo")
    trainer = StageOneTrainer(tiny_model_path, varied_reward, args=args, train_dataset=dataset)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(0)
    prompt_ids = torch.randint(5, 100, (2, 3))
    completion_ids = torch.randint(5, 100, (2, 6))
    labels = torch.tensor([[1, 1, 0, 0, 2, 2], [1, 1, 1, 0, 2, 0]])
    completion_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompt_ids, completion_ids], 1), torch.ones(2, 9, dtype=torch.long), 6
        )
    ref = logps - 0.3 * torch.arange(6).float()  # the reference differs more on later tokens
    advantages = torch.tensor([[0.5, 0.5, 0.0, 0.0, -1.0, -1.0], [2.0, 2.0, 2.0, 0.0, 1.0, 0.0]])
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "tool_mask": (labels > 0).long(),
        "turn_labels": labels,
        "advantages": advantages,
        "ref_per_token_logps": ref,
        "num_items_in_batch": torch.tensor(8),
    }
    loss = trainer._compute_loss(trainer.model, inputs)

    mask = (completion_mask * (labels > 0)).float()
    kl = torch.exp(ref - logps) - (ref - logps) - 1
    weights = torch.tensor([0.0, 0.5, 0.02])[labels]
    expected = ((-advantages + weights * kl) * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    uniform = ((-advantages + 0.5 * kl) * mask).sum() / mask.sum()
    assert abs(loss.item() - uniform.item()) > 1e-3  # the turn weights make a difference the test can see
    assert trainer.beta == 0.5 and type(trainer.beta) is float  # restored after the loss


def test_stage_one_turn_one_kl_pulls_turn_one_back_to_the_reference(tmp_path, dataset, tiny_model_path):
    """A policy perturbed away from its reference, under a constant reward (every advantage 0): the strong turn-1
    KL alone pulls it back (measured on fixed sequences); with every KL weight at 0 the weights do not move."""

    def constant_reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    torch.manual_seed(0)
    fixed = torch.randint(5, 400, (4, 24))

    def distance_to_reference(trainer):
        with torch.no_grad():
            args = (fixed, torch.ones_like(fixed), 16)
            policy, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, *args)
            reference, _, _ = trainer._get_per_token_logps_and_entropies(trainer.ref_model, *args)
        return (policy - reference).abs().mean().item()

    def run(turn_betas):
        args = make_args(
            tmp_path, StageOneConfig, turn_betas=turn_betas, max_steps=10, learning_rate=0.03, max_completion_length=8
        )
        trainer = StageOneTrainer(tiny_model_path, constant_reward, args=args, train_dataset=dataset)
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        perturbed = _params(trainer.model)
        before = distance_to_reference(trainer) if trainer.ref_model is not None else None
        trainer.train()
        after = distance_to_reference(trainer) if trainer.ref_model is not None else None
        moved = any(not torch.equal(p, perturbed[n]) for n, p in trainer.model.named_parameters())
        return before, after, moved

    before, after, moved = run([1.0, 0.0])
    assert moved and after < 0.85 * before, (before, after)
    _, _, moved = run([0.0, 0.0])
    assert not moved


def test_resume_from_checkpoint(tmp_path, dataset, tiny_model_path):
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=dataset).train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").exists()
    args = make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 4
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3, 4]
    assert (tmp_path / "out" / "checkpoint-4").exists()


class ColumnInstructionTrainer(MultiTurnRLOOTrainer):
    """A task adapter: the instruction comes from a column, and returns are a custom function."""

    seen_returns = None

    def get_turn_instruction(self, example, turn, attempts=()):
        return example["hint"]

    def compute_turn_returns(self, rewards):
        returns = torch.stack([torch.zeros_like(rewards[:, 0]), 3.0 * rewards[:, 1]], dim=1)
        ColumnInstructionTrainer.seen_returns = (rewards.clone(), returns.clone())
        return returns


def test_subclass_hooks(tmp_path, tiny_model_path):
    rows = [{"prompt": [{"role": "user", "content": f"{i}?"}], "hint": f"Check step {i}."} for i in range(2)]
    trainer = ColumnInstructionTrainer(
        tiny_model_path, varied_reward, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows)
    )
    trainer.model.train()
    batch = [rows[0]] * 3 + [rows[1]] * 3
    out = trainer._generate_and_score_completions(batch)
    tokenizer = trainer.processing_class
    for i, hint in enumerate(["Check step 0."] * 3 + ["Check step 1."] * 3):
        instruction = out["completion_ids"][i][out["turn_labels"][i] == 0]
        assert hint in tokenizer.decode(instruction)
    rewards, returns = ColumnInstructionTrainer.seen_returns
    assert torch.equal(returns[:, 1], 3.0 * rewards[:, 1])
    assert (out["advantages"][out["turn_labels"] == 1] == 0).all()  # turn-1 returns are all 0: no advantage


def test_bad_input_errors(tmp_path, dataset, tiny_model_path):
    with pytest.raises(ValueError, match="no `prompt` column"):
        MultiTurnRLOOTrainer(
            tiny_model_path,
            varied_reward,
            args=make_args(tmp_path),
            train_dataset=dataset.rename_column("prompt", "q"),
        )
    with pytest.raises(ValueError, match="num_generations >= 2"):
        make_args(tmp_path, num_generations=1)
    with pytest.raises(ValueError, match="one non-negative KL weight per turn"):
        make_args(tmp_path, turn_betas=[0.1, 0.1, 0.1])

    def short_reward(prompts, completions, **kwargs):
        return [1.0]

    trainer = MultiTurnRLOOTrainer(tiny_model_path, short_reward, args=make_args(tmp_path), train_dataset=dataset)
    with pytest.raises(ValueError, match="returned 1 rewards"):
        trainer.train()

    args = make_args(tmp_path, max_prompt_length=4)
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=dataset)
    with pytest.raises(ValueError, match="max_prompt_length=4"):
        trainer.train()

    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=make_args(tmp_path), train_dataset=dataset)
    trainer.processing_class.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        trainer.train()


def test_unjudged_samples_are_skipped_and_logged(tmp_path, dataset, tiny_model_path):
    def half_judged(prompts, completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    trainer = MultiTurnRLOOTrainer(tiny_model_path, half_judged, args=make_args(tmp_path), train_dataset=dataset)
    trainer.model.train()
    out = trainer._generate_and_score_completions([row for row in dataset.select(range(2)) for _ in range(3)])
    assert (out["advantages"][1::2] == 0).all()
    trainer.train()
    assert trainer.state.log_history[0]["turn2/unscored"] == pytest.approx(0.5)


def test_plain_text_prompts(tmp_path, tiny_model_path):
    rows = [{"prompt": f"Question {i}: what is 2+2?"} for i in range(2)]
    args = make_args(tmp_path, instruction_template=" Again: {instruction} ", turn_instruction="fix it")
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.model.train()
    out = trainer._generate_and_score_completions([rows[0]] * 3 + [rows[1]] * 3)
    instruction = out["completion_ids"][0][out["turn_labels"][0] == 0]
    assert trainer.processing_class.decode(instruction) == " Again: fix it "


def test_push_to_hub_writes_a_score_model_card(tmp_path, tiny_model_path, monkeypatch):
    """Everything up to the upload runs; only the two network calls are stubbed."""
    import transformers.trainer

    uploads = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploads.append((repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir() if p.is_file()}))

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    rows = [{"prompt": [{"role": "user", "content": f"{i} + 1?"}]} for i in range(6)]
    args = make_args(tmp_path, max_steps=1, hub_model_id="someone/score-tiny")
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.model_card_metrics = {"base": {"acc_t1": 0.25, "acc_t2": 0.2}, "SCoRe": {"acc_t1": 0.3, "acc_t2": 0.45}}
    trainer.push_to_hub()
    repo_id, files = uploads[-1]
    assert repo_id == "someone/score-tiny"
    assert "model.safetensors" in files and "tokenizer.json" in files
    card = files["README.md"].decode()
    assert "2409.12917" in card and "Training Language Models to Self-Correct" in card
    assert "| SCoRe | 0.300 | 0.450 |" in card

"""Training and evaluation render every turn the same way: token ids the model sees, and texts the rewards see."""

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer
from score_trl.evaluation import EvalSettings, evaluate
from score_trl.tiny_model import CHAT_TEMPLATE, save_tiny_model


# The chat template reads a `chat_template_kwargs` value, so that ignoring the kwargs changes the ids.
STYLED_TEMPLATE = "{%- if style is defined %}{{- '[' + style + ']' }}{%- endif %}" + CHAT_TEMPLATE


def record_generate(model, attempt: list[int]):
    """Replace `model.generate` by a stand-in that records each context (padding removed) and answers `attempt`."""
    contexts = []

    def generate(input_ids, attention_mask, **kwargs):
        # the context the model attends to: a continued cache's holes (masked) are not part of it
        contexts.append([row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask, strict=True)])
        sequences = torch.cat([input_ids, torch.tensor(attempt).expand(len(input_ids), -1)], dim=1)
        if kwargs.get("return_dict_in_generate"):
            return SimpleNamespace(sequences=sequences, cache=None, past_key_values=None, logits=None)
        return sequences

    model.generate = generate
    return contexts


def record_reward(seen: list):
    def reward(prompts, completions, **kwargs):
        seen.append(prompts)
        return [float(i % 2) for i in range(len(completions))]

    return reward


def unique(rows):
    return [row for i, row in enumerate(rows) if row not in rows[:i]]


@pytest.mark.parametrize("conversational", [True, False], ids=["chat", "plain"])
@pytest.mark.parametrize("bos", [False, True], ids=["no-bos", "bos"])
def test_evaluation_renders_the_trainers_turns(tmp_path, conversational, bos):
    path = save_tiny_model(tmp_path / "model", bos=bos)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = ("{{- bos_token }}" if bos else "") + STYLED_TEMPLATE
    tokenizer.save_pretrained(path)
    problems = ["What is 1 + 1?", "What is 2 + 3?"]
    prompts = [[{"role": "user", "content": p}] for p in problems] if conversational else problems
    rows = [{"prompt": prompt, "answer": str(i)} for i, prompt in enumerate(prompts)]
    args = MultiTurnRLOOConfig(
        output_dir=str(tmp_path / "out"),
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=4,
        turn_instruction="Check it.",
        instruction_template=" Again: {instruction} ",
        chat_template_kwargs={"style": "terse"},
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    attempt = [*tokenizer(" 2", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]

    seen_train = []
    trainer = MultiTurnRLOOTrainer(path, record_reward(seen_train), args=args, train_dataset=Dataset.from_list(rows))
    train_contexts = record_generate(trainer.model, attempt)
    trainer.model.train()
    trainer._generate_and_score_completions([rows[0], rows[0], rows[1], rows[1]])

    seen_eval = []
    model = AutoModelForCausalLM.from_pretrained(path)
    eval_contexts = record_generate(model, attempt)
    settings = EvalSettings.from_trainer(trainer, max_new_tokens=4, batch_size=2)
    evaluate(model, tokenizer, rows, record_reward(seen_eval), settings)

    assert len(train_contexts) == len(eval_contexts) == 2  # one generate call per turn in each
    for turn in range(2):
        assert unique(train_contexts[turn]) == eval_contexts[turn], f"turn {turn + 1} token ids differ"
        assert unique(seen_train[turn]) == seen_eval[turn], f"turn {turn + 1} reward prompts differ"
    first = eval_contexts[0][0]
    assert (first[0] == tokenizer.bos_token_id) == bos  # plain text too: BOS as the tokenizer adds it
    if conversational:
        assert tokenizer.decode(first).startswith(("<|bos|>" if bos else "") + "[terse]")  # the kwargs reach it


class HintTrainer(MultiTurnRLOOTrainer):
    """A subclass that shows each problem its own instruction."""

    def get_turn_instruction(self, example, turn, attempts=()):
        return f"Hint {example['answer']}: look again at turn {turn}."


@pytest.mark.parametrize("conversational", [True, False], ids=["chat", "plain"])
def test_evaluation_shows_a_subclass_instruction_per_row(tmp_path, conversational):
    path = save_tiny_model(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(path)
    problems = [f"What is {i} + 1?" for i in range(3)]
    prompts = [[{"role": "user", "content": p}] for p in problems] if conversational else problems
    rows = [{"prompt": prompt, "answer": str(i + 1)} for i, prompt in enumerate(prompts)]
    args = MultiTurnRLOOConfig(
        output_dir=str(tmp_path / "out"), num_generations=2, turn_instruction="The fixed one.", use_cpu=True,
        bf16=False, report_to="none",
    )  # fmt: skip
    trainer = HintTrainer(path, record_reward([]), args=args, train_dataset=Dataset.from_list(rows))
    model = AutoModelForCausalLM.from_pretrained(path)
    contexts = record_generate(
        model, [*tokenizer(" 2", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    )
    seen = []
    evaluate(model, tokenizer, rows, record_reward(seen), EvalSettings.from_trainer(trainer, max_new_tokens=4))
    for i, row in enumerate(rows):
        hint = f"Hint {row['answer']}: look again at turn 2."
        assert hint in tokenizer.decode(contexts[1][i]) and "fixed" not in tokenizer.decode(contexts[1][i])
        shown = seen[1][i][-1]["content"] if conversational else seen[1][i]
        assert hint in shown  # the reward functions see the row's own instruction too


@pytest.mark.parametrize("conversational", [True, False], ids=["chat", "plain"])
def test_turn_one_ids_match_trls_own_rendering(tmp_path, conversational):
    """`TurnRenderer.first_turn_ids` stands in for GRPOTrainer's `_tokenize_prompts` so that evaluation can render
    without a trainer: a TRL release that renders differently fails here."""
    path = save_tiny_model(tmp_path / "model", bos=True)
    prompts = [[{"role": "user", "content": "What is 1 + 1?"}]] if conversational else ["What is 1 + 1?"]
    args = MultiTurnRLOOConfig(
        output_dir=str(tmp_path / "out"), num_generations=2, use_cpu=True, bf16=False, report_to="none"
    )
    trainer = MultiTurnRLOOTrainer(
        path, record_reward([]), args=args, train_dataset=Dataset.from_list([{"prompt": p} for p in prompts])
    )
    trls, _, _ = trainer._tokenize_prompts(prompts)
    assert trainer.turn_renderer.first_turn_ids(prompts) == [list(ids) for ids in trls]

r"""The embedded task: a self-contained self-correction testbed that runs offline in minutes on a CPU.

Problems are "solve a * x + b = t mod 10" (a in {1, 3, 7, 9}, so x is unique; b in 0..4: 200 problems, 40 held out
from RL).
Turn 1 answers `answer: \boxed{x}`; turn 2 first writes a check of the first answer, then answers again:
`check: a * x1 = m , m + b = v , ok . answer: \boxed{x2}` ("no" when v != t). Checking is easier than solving, which leaves
room for self-correction; the answers use `\boxed{}`, so the same `math_reward` scores the toy and MATH.

The base model is a tiny Llama pretrained on two-turn traces of an imperfect solver: right at turn 1 with
probability `p_correct`, always writing a correct check, then ignoring it: it keeps its first answer with probability
`p_keep` and otherwise tries again, right with probability `p_correct` when its first answer was wrong (never
repeating it). Acting on its own check would make it much better; ignoring it, it is worse at turn 2. Like real
base models, its second attempts are no better than its first (delta <= 0). `build_base_model` makes it
deterministically (one thread, fixed seeds) and caches it.

`COPY_VARIANT` (a `ContinuedRecipe`) is the second task of benchmarks/reproduce.py: the default base continued on
traces that keep the first answer more often, and a wrong one less often than a right one (`p_keep_wrong`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from ..testing import build_tiny_model


__all__ = [
    "COPY_VARIANT",
    "EMBEDDED_INSTRUCTION",
    "ContinuedRecipe",
    "EmbeddedRecipe",
    "build_base_model",
    "build_tokenizer",
    "make_problems",
    "split_problems",
]

logger = logging.getLogger(__name__)

# b in 0..4: the check's sum m + b (mod 10) is then a 50-entry table, which a tiny model learns in the pretraining
# budget; with b in 0..9 (100 entries, modular addition) its own checks were right only 30% of the time.
NUM_OFFSETS = 5
EMBEDDED_INSTRUCTION = "There might be an error in the solution above . Please correct the error , if any ."
_SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
_WORDS = [
    "user", "assistant", "system", "solve", "x", "*", "+", "=", "mod", "10", "answer:", "check:", ",", "ok", "no",
    ".", *map(str, range(10)), *(f"\\boxed{{{d}}}" for d in range(10)), *EMBEDDED_INSTRUCTION.split(),
]  # fmt: skip
_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + ' ' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant ' }}{%- endif %}"
)


_LATER_FIELDS = {"p_keep_wrong": None}


@dataclass(frozen=True)
class EmbeddedRecipe:
    """Everything that determines the embedded base model; its hash names the cache entry."""

    p_correct: float = 0.6
    p_keep: float = 0.6
    hidden_size: int = 128
    num_layers: int = 2
    pretrain_steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    p_keep_wrong: float | None = None  # keep probability after a wrong first answer (None: p_keep either way)
    trace_version: int = 3  # bump when the traces change, so that no stale cached model is reused

    def key(self) -> str:
        # Fields added later are left out at their defaults, so that existing cache entries stay valid.
        fields = {k: v for k, v in asdict(self).items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ContinuedRecipe:
    """A base model that continues `parent`'s pretraining on traces that keep the first answer more often.

    This is how the copy-prone variant is made: a base that rarely changes its answer is the paper's regime, where
    RL can raise turn-1 accuracy and then copy it. What RL then needs from the base is a weak link between its own
    check and its decision to change (`p_keep_wrong` < `p_keep`): continuing the default base on traces that keep
    a right answer 90% and a wrong one 75% of the time gave a base that changes a wrong first answer 19% and a right
    one 14% of the time. With the same keep rate either way (90%), the continued base changed both at 10-11% and no
    RL arm self-corrected; pretrained from scratch with a strong link (80% / 50%), the model's own checks were
    right only 69% of the time. docs/results.md has the measurements.
    """

    parent: EmbeddedRecipe = EmbeddedRecipe()
    p_keep: float = 0.9
    p_keep_wrong: float | None = 0.75
    steps: int = 600
    learning_rate: float = 1e-3
    seed: int = 1

    def key(self) -> str:
        own = {k: v for k, v in asdict(self).items() if k != "parent"}
        return f"{self.parent.key()}-{hashlib.sha256(json.dumps(own, sort_keys=True).encode()).hexdigest()[:12]}"


# The second embedded task of benchmarks/reproduce.py: the default base, continued 600 steps on copy-prone traces.
COPY_VARIANT = ContinuedRecipe()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the task's ~60 words, with a chat template (assistant turns marked for SFT)."""
    vocab = {token: i for i, token in enumerate(dict.fromkeys(_SPECIALS + _WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>"],
        chat_template=_TEMPLATE,
        padding_side="left",
    )


def make_problems() -> list[dict]:
    """All 200 problems, each with `prompt` (conversational), `answer` (gold x) and an `id`."""
    problems = []
    for a in (1, 3, 7, 9):
        for b in range(NUM_OFFSETS):
            for x in range(10):
                t = (a * x + b) % 10
                problems.append(
                    {
                        "id": f"{a}-{b}-{t}",
                        "prompt": [{"role": "user", "content": f"solve {a} * x + {b} = {t} mod 10"}],
                        "answer": str(x),
                        "a": a,
                        "b": b,
                        "t": t,
                    }
                )
    return problems


def split_problems(held_out: int = 40, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(RL training problems, held-out evaluation problems), a fixed shuffle."""
    problems = make_problems()
    random.Random(seed).shuffle(problems)
    return problems[held_out:], problems[:held_out]


def first_attempt(x: int) -> str:
    return f"answer: \\boxed{{{x}}}"


def second_attempt(problem: dict, x1: int, x2: int) -> str:
    # The check is written as two small steps (a product, then a sum, mod 10): each a two-input lookup that a tiny
    # model learns quickly, while solving stays a three-input one. Checking is then really easier than solving.
    a, b, t = problem["a"], problem["b"], problem["t"]
    m = (a * x1) % 10
    v = (m + b) % 10
    return f"check: {a} * {x1} = {m} , {m} + {b} = {v} , {'ok' if v == t else 'no'} . answer: \\boxed{{{x2}}}"


def _solver_trace(problem: dict, recipe: EmbeddedRecipe, rng: random.Random) -> list[dict]:
    x = int(problem["answer"])
    wrong = [d for d in range(10) if d != x]
    x1 = x if rng.random() < recipe.p_correct else rng.choice(wrong)
    p_keep = recipe.p_keep if x1 == x or recipe.p_keep_wrong is None else recipe.p_keep_wrong
    if rng.random() < p_keep:
        x2 = x1
    else:  # a second, independent try at solving that never repeats the first answer
        resolved = x != x1 and rng.random() < recipe.p_correct
        x2 = x if resolved else rng.choice([d for d in wrong if d != x1])
    return [
        *problem["prompt"],
        {"role": "assistant", "content": first_attempt(x1)},
        {"role": "user", "content": EMBEDDED_INSTRUCTION},
        {"role": "assistant", "content": second_attempt(problem, x1, x2)},
    ]


def _new_model(recipe: EmbeddedRecipe, tokenizer: PreTrainedTokenizerFast):
    return build_tiny_model(
        tokenizer,
        "llama",
        hidden_size=recipe.hidden_size,
        seed=recipe.seed,
        num_layers=recipe.num_layers,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )


def _pretrain(model, traces: EmbeddedRecipe, steps: int, learning_rate: float, seed: int, tokenizer, problems):
    """`steps` of SFT on solver traces drawn with `traces`'s probabilities, the learning rate decaying linearly."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / steps)
    model.train()
    for step in tqdm(range(steps), desc="pretraining the embedded base model"):
        batch = [_solver_trace(rng.choice(problems), traces, rng) for _ in range(traces.batch_size)]
        # Right padding: positions then match generation's (Llama numbers positions from 0 without position ids).
        encoded = tokenizer.apply_chat_template(
            batch, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, padding=True,
            padding_side="right", return_tensors="pt",
        )  # fmt: skip
        labels = encoded["input_ids"].masked_fill(encoded["assistant_masks"] == 0, -100)
        loss = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            logger.info("pretraining step %d loss %.4f", step, loss.item())
    return model


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCORE_TRL_CACHE", Path.home() / ".cache" / "score_trl"))


def build_base_model(
    recipe: EmbeddedRecipe | ContinuedRecipe | None = None, cache_dir: str | Path | None = None
) -> str:
    """The path of the embedded base model (and tokenizer), pretraining it on first use (minutes on one CPU thread).

    Pretraining covers all 200 problems, the 40 held out from RL included, as a real base model has seen problems
    like its evaluation set: held-out problems measure RL's effect, not the base model's generalisation. A
    `ContinuedRecipe` builds (or reuses) its parent first.
    """
    recipe = recipe or EmbeddedRecipe()
    path = Path(cache_dir or default_cache_dir()) / f"embedded-{recipe.key()}"
    if (path / "config.json").exists():
        return str(path)
    parent_path = build_base_model(recipe.parent, cache_dir) if isinstance(recipe, ContinuedRecipe) else None
    logger.info("Pretraining the embedded base model into %s (once; later runs reuse it).", path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and faster than two threads for a model this small
    try:
        tokenizer = build_tokenizer()
        if parent_path is None:
            model, traces, steps = _new_model(recipe, tokenizer), recipe, recipe.pretrain_steps
        else:
            model = AutoModelForCausalLM.from_pretrained(parent_path)
            traces = replace(recipe.parent, p_keep=recipe.p_keep, p_keep_wrong=recipe.p_keep_wrong)
            steps = recipe.steps
        _pretrain(model, traces, steps, recipe.learning_rate, recipe.seed, tokenizer, make_problems())
    finally:
        torch.set_num_threads(threads)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    tmp.rename(path)  # a crash mid-save never leaves a half-written cache entry
    return str(path)

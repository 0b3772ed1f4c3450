"""The embedded base model: a tiny Llama pretrained on the embedded task's solver traces (`score_trl.embedded.task`).

`EmbeddedRecipe` holds everything that determines it and names its cache entry; `build_base_model` makes it
deterministically (one thread, fixed seeds) and caches it. Pretraining covers all 200 problems, the 40 held out from
RL included, as a real base model has seen problems like its evaluation set: held-out problems measure RL's effect,
not the base model's generalisation. docs/results.md has the properties of the default base, measured before RL.

`pretrain` and `cached_model` are the parts a variant base is made of: benchmarks/variants.py continues the default
base on traces with other habits this way, for benchmarks/reproduce.py's variant tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ..loading import default_cache_dir
from ..tiny_model import build_tiny_model
from .task import PRACTICE_FROM, build_tokenizer, make_problems, practice_trace, solver_trace


__all__ = ["EmbeddedRecipe", "TRACE_VERSION", "base_model_path", "build_base_model", "cached_model", "pretrain"]

logger = logging.getLogger(__name__)


# Bump when the traces change, so that no stale cached model is reused.
TRACE_VERSION = 5
# Cache entries are named by a hash of the recipe, which once also held the solver habits that only
# benchmarks/variants.py uses now: they are hashed at the values every library base has, so that each cached base
# keeps the name it was saved under (tests/test_reproduce.py pins the default's).
_HASHED_HABITS = {"p_keep_wrong": None, "p_first_solve": 0.0}


@dataclass(frozen=True)
class EmbeddedRecipe:
    """Everything that determines the embedded base model; its hash names the cache entry.

    The trace probabilities are the solver's (`score_trl.embedded.task.solver_trace`): right at turn 1 with
    `p_correct`; keeps its first answer with `p_keep`; otherwise after a "no" solves in worked steps with `p_solve`,
    else guesses. `p_practice` of the rows are practice traces (`score_trl.embedded.task.practice_trace`), learned
    only from `solve:` on: this is how the base learns the steps in the place it would use them, without learning to
    use them after a "no".
    """

    p_correct: float = 0.6
    p_keep: float = 0.6
    p_solve: float = 0.15
    p_practice: float = 0.2
    hidden_size: int = 128
    num_layers: int = 2
    pretrain_steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        fields = {**asdict(self), **_HASHED_HABITS, "trace_version": TRACE_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


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


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    traces: Any,
    steps: int,
    learning_rate: float,
    seed: int,
    solver: Callable[[dict, Any, random.Random], list[dict]] = solver_trace,
) -> PreTrainedModel:
    """`steps` of SFT on `solver` traces of every embedded problem, drawn with `traces`'s probabilities (an
    `EmbeddedRecipe`, or whatever habits `solver` reads, with `p_correct`, `p_practice` and `batch_size`), the
    learning rate decaying linearly."""
    problems = make_problems()
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / steps)
    practice_id = tokenizer.convert_tokens_to_ids(PRACTICE_FROM)
    model.train()
    for step in tqdm(range(steps), desc="pretraining the embedded base model"):
        practice = [rng.random() < traces.p_practice for _ in range(traces.batch_size)]
        batch = [(practice_trace if p else solver)(rng.choice(problems), traces, rng) for p in practice]
        # Right padding: positions then match generation's (Llama numbers positions from 0 without position ids).
        encoded = tokenizer.apply_chat_template(
            batch, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, padding=True,
            padding_side="right", return_tensors="pt",
        )  # fmt: skip
        labels = encoded["input_ids"].masked_fill(encoded["assistant_masks"] == 0, -100)
        for row in (i for i, p in enumerate(practice) if p):  # the steps only, not the decision to solve
            start = encoded["input_ids"][row].tolist().index(practice_id)
            labels[row, : start + 1] = -100
        loss = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            logger.info("pretraining step %d loss %.4f", step, loss.item())
    return model


def cached_model(
    name: str,
    make: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerFast]],
    description: dict,
    cache_dir: str | Path | None = None,
) -> str:
    """The path of the cache entry `name`, made by `make()` on first use: on one thread (deterministic, and faster
    than two for a model this small), leaving the global random state as it found it, and written whole or not at
    all. `description` is saved beside it as `recipe.json`."""
    path = Path(cache_dir or default_cache_dir()) / name
    if (path / "config.json").exists():
        return str(path)
    logger.info("Pretraining the embedded base model into %s (once; later runs reuse it).", path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # Pretraining draws from its own generators but leaves the global ones as it found them, so that what runs next
    # (the base model's evaluation) samples the same whether or not the base model was cached.
    cpu_state = torch.get_rng_state()
    try:
        model, tokenizer = make()
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(cpu_state)
    # A folder of this process's own, renamed whole: a crash mid-save never leaves a half-written entry, and two
    # processes making the same entry at once never write into one folder.
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "recipe.json").write_text(json.dumps(description, indent=2))
    try:
        tmp.rename(path)
    except OSError:
        if not (path / "config.json").exists():
            raise
        shutil.rmtree(tmp)  # another process finished the same entry first; made from the same recipe, it is as good
    return str(path)


def build_base_model(recipe: EmbeddedRecipe | None = None, cache_dir: str | Path | None = None) -> str:
    """The path of the embedded base model (and tokenizer), pretraining it on first use (minutes on one CPU thread)."""
    recipe = recipe or EmbeddedRecipe()

    def make():
        tokenizer = build_tokenizer()
        model = _new_model(recipe, tokenizer)
        return pretrain(model, tokenizer, recipe, recipe.pretrain_steps, recipe.learning_rate, recipe.seed), tokenizer

    return cached_model(f"embedded-{recipe.key()}", make, asdict(recipe), cache_dir)


def base_model_path(quick: bool = False) -> str:
    """The embedded task's base model (`Task.base_model`): the default recipe's, or with `quick` a base pretrained
    150 steps instead of 1000, which smoke runs use (it corrects no better, but takes seconds to build)."""
    return build_base_model(EmbeddedRecipe(pretrain_steps=150) if quick else EmbeddedRecipe())

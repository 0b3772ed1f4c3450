"""The embedded base model: a tiny Llama pretrained on the embedded task's solver traces (`score_trl.data.embedded`).

`EmbeddedRecipe` holds everything that determines it and names its cache entry; `build_base_model` makes it
deterministically (one thread, fixed seeds) and caches it. Pretraining covers all 200 problems, the 40 held out from
RL included, as a real base model has seen problems like its evaluation set: held-out problems measure RL's effect,
not the base model's generalisation. docs/results.md has the properties of the default base, measured before RL.

A `ContinuedRecipe` continues a base on changed traces; benchmarks/reproduce.py's variant tasks are made this way,
`COPY_VARIANT` among them: the default base continued on traces that keep the first answer more often, and a wrong
one less often than a right one (`p_keep_wrong`).
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
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from .embedded import PRACTICE_FROM, build_tokenizer, make_problems, practice_trace, solver_trace
from .tiny_model import build_tiny_model


__all__ = ["COPY_VARIANT", "VARIANTS", "ContinuedRecipe", "EmbeddedRecipe", "build_base_model", "default_cache_dir"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedRecipe:
    """Everything that determines the embedded base model; its hash names the cache entry.

    The trace probabilities are the solver's (`score_trl.data.embedded.solver_trace`): right at turn 1 with
    `p_correct`; keeps its first answer with `p_keep` (`p_keep_wrong` after a wrong one, when set); otherwise after
    a "no" solves in worked steps with `p_solve`, else guesses. `p_practice` of the rows are practice traces
    (`score_trl.data.embedded.practice_trace`), learned only from `solve:` on: this is how the base learns the
    steps in the place it would use them, without learning to use them after a "no".
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
    p_keep_wrong: float | None = None
    p_first_solve: float = 0.0  # solves in steps at turn 1 (then right): a turn-1 gain that RL could spread
    # the values of `a` whose problems the turn-1 solve habit covers: fewer caps what sharpening turn 1 can gain
    first_solve_coefficients: tuple[int, ...] = (1, 3, 7, 9)
    trace_version: int = 5  # bump when the traces change, so that no stale cached model is reused

    def key(self) -> str:
        fields = asdict(self)
        if not self.p_first_solve:  # without the habit its coefficients change nothing: keep the older entries' keys
            del fields["first_solve_coefficients"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ContinuedRecipe:
    """A base model that continues `parent`'s pretraining on changed traces: keeping the first answer more often, or
    with a turn-1 solve habit added. Continuing keeps the steps the parent learned: pretrained from scratch with a
    turn-1 habit on half of the problems, the base computed the check's sum right 60% of the time and its solves
    after a "no" were right 29% of the time (docs/results.md).

    This is how the copy-prone variant is made: a base that rarely changes its answer is the paper's regime, where
    naive multi-turn RL can raise turn-1 accuracy and then copy it. On the previous task (no worked solve), keeping
    a right answer 90% and a wrong one 75% of the time made naive RL's answer-changed rate collapse from 0.16 to
    0.05 while SCoRe kept changing 0.12-0.18 (docs/results.md).
    """

    parent: EmbeddedRecipe = EmbeddedRecipe()
    p_keep: float = 0.9
    p_keep_wrong: float | None = 0.75
    steps: int = 600
    learning_rate: float = 1e-3
    seed: int = 1
    p_first_solve: float | None = None  # as `EmbeddedRecipe`'s; None keeps the parent's (as does the next field)
    first_solve_coefficients: tuple[int, ...] | None = None

    def traces(self) -> EmbeddedRecipe:
        """The parent's trace probabilities with this continuation's changes."""
        changes = {"p_keep": self.p_keep, "p_keep_wrong": self.p_keep_wrong}
        for name in ("p_first_solve", "first_solve_coefficients"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return replace(self.parent, **changes)

    def key(self) -> str:
        own = {k: v for k, v in asdict(self).items() if k != "parent"}
        for name in ("p_first_solve", "first_solve_coefficients"):
            if own[name] is None:  # left to the parent: unhashed, so that entries made before the field still match
                del own[name]
        return f"{self.parent.key()}-{hashlib.sha256(json.dumps(own, sort_keys=True).encode()).hexdigest()[:12]}"


# The variant bases of benchmarks/reproduce.py's tasks, by name (docs/results.md has their properties).
COPY_VARIANT = ContinuedRecipe()  # the default base, continued 600 steps on copy-prone traces
# A capped turn-1 rival (issue 10's property 3): the solver also solves in steps at turn 1, 20% of the time, on the
# problems with a in {1, 9} only, so that sharpening turn 1 transfers to held-out problems but cannot reach all.
_RIVAL = {"p_first_solve": 0.2, "first_solve_coefficients": (1, 9)}
VARIANTS: dict[str, EmbeddedRecipe | ContinuedRecipe] = {
    "default": EmbeddedRecipe(),
    "rival": ContinuedRecipe(p_keep=0.6, p_keep_wrong=None, **_RIVAL),
    "copy": COPY_VARIANT,
    "copy_rival": ContinuedRecipe(**_RIVAL),
}


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
    practice_id = tokenizer.convert_tokens_to_ids(PRACTICE_FROM)
    model.train()
    for step in tqdm(range(steps), desc="pretraining the embedded base model"):
        practice = [rng.random() < traces.p_practice for _ in range(traces.batch_size)]
        batch = [(practice_trace if p else solver_trace)(rng.choice(problems), traces, rng) for p in practice]
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


def default_cache_dir() -> Path:
    """`$SCORE_TRL_CACHE`, else ~/.cache/score_trl."""
    return Path(os.environ.get("SCORE_TRL_CACHE", Path.home() / ".cache" / "score_trl"))


def build_base_model(
    recipe: EmbeddedRecipe | ContinuedRecipe | None = None, cache_dir: str | Path | None = None
) -> str:
    """The path of the embedded base model (and tokenizer), pretraining it on first use (minutes on one CPU thread).

    A `ContinuedRecipe` builds (or reuses) its parent first.
    """
    recipe = recipe or EmbeddedRecipe()
    path = Path(cache_dir or default_cache_dir()) / f"embedded-{recipe.key()}"
    if (path / "config.json").exists():
        return str(path)
    parent_path = build_base_model(recipe.parent, cache_dir) if isinstance(recipe, ContinuedRecipe) else None
    logger.info("Pretraining the embedded base model into %s (once; later runs reuse it).", path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and faster than two threads for a model this small
    # Pretraining draws from its own generators but leaves the global ones as it found them, so that what runs next
    # (the base model's evaluation) samples the same whether or not the base model was cached.
    cpu_state = torch.get_rng_state()
    try:
        tokenizer = build_tokenizer()
        if parent_path is None:
            model, traces, steps = _new_model(recipe, tokenizer), recipe, recipe.pretrain_steps
        else:
            model = AutoModelForCausalLM.from_pretrained(parent_path)
            traces = recipe.traces()
            steps = recipe.steps
        _pretrain(model, traces, steps, recipe.learning_rate, recipe.seed, tokenizer, make_problems())
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(cpu_state)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    tmp.rename(path)  # a crash mid-save never leaves a half-written cache entry
    return str(path)

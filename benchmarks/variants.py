"""The variant base models of benchmarks/reproduce.py's tasks: the embedded default base continued on traces with
other habits.

Continuing keeps the steps the parent learned: pretrained from scratch with a turn-1 habit on half of the problems,
the base computed the check's sum right 60% of the time and its solves after a "no" were right 29% of the time
(docs/results.md). Only the benchmarks use these: the research habits (`p_keep_wrong`, a turn-1 solve habit) live
here, and the library keeps the default base (`score_trl.embedded`).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, fields

from transformers import AutoModelForCausalLM

from score_trl.embedded import EmbeddedRecipe, build_base_model, build_tokenizer, cached_model, pretrain
from score_trl.embedded.task import EMBEDDED_INSTRUCTION, first_attempt, second_attempt


__all__ = ["COPY_VARIANT", "VARIANTS", "ContinuedRecipe", "VariantHabits", "build_variant", "variant_solver_trace"]


@dataclass(frozen=True)
class VariantHabits:
    """The habits of a variant's solver: the library solver's (`EmbeddedRecipe`'s `p_*` and its `batch_size`), and
    two it does not have. `p_keep_wrong`: keeps a wrong first answer with this probability instead of `p_keep`;
    `p_first_solve`: solves in worked steps at turn 1 (then right) on the problems whose `a` is in
    `first_solve_coefficients`."""

    p_correct: float
    p_keep: float
    p_solve: float
    p_practice: float
    batch_size: int
    p_keep_wrong: float | None = None
    p_first_solve: float = 0.0
    first_solve_coefficients: tuple[int, ...] = (1, 3, 7, 9)

    @classmethod
    def of(cls, recipe: EmbeddedRecipe, **changes) -> VariantHabits:
        """`recipe`'s habits with `changes`."""
        own = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in asdict(recipe).items() if k in own}, **changes})


def variant_solver_trace(problem: dict, habits: VariantHabits, rng: random.Random) -> list[dict]:
    """`score_trl.embedded.task.solver_trace` with the variant habits: with no habit set, the same trace from the
    same draws (a habit draws only when it is on)."""
    x = int(problem["answer"])
    first_solve = habits.p_first_solve and problem["a"] in habits.first_solve_coefficients
    if first_solve and rng.random() < habits.p_first_solve:
        first, x1 = first_attempt(x, problem), x
    else:
        x1 = x if rng.random() < habits.p_correct else rng.choice([d for d in range(10) if d != x])
        first = first_attempt(x1)
    p_keep = habits.p_keep if x1 == x or habits.p_keep_wrong is None else habits.p_keep_wrong
    solve = False
    if rng.random() < p_keep:
        x2 = x1
    elif x1 != x and rng.random() < habits.p_solve:
        x2, solve = x, True
    else:
        x2 = rng.choice([d for d in range(10) if d != x1])
    return [
        *problem["prompt"],
        {"role": "assistant", "content": first},
        {"role": "user", "content": EMBEDDED_INSTRUCTION},
        {"role": "assistant", "content": second_attempt(problem, x1, x2, solve)},
    ]


@dataclass(frozen=True)
class ContinuedRecipe:
    """A base model that continues `parent`'s pretraining on changed traces: keeping the first answer more often, or
    with a turn-1 solve habit added.

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
    p_first_solve: float | None = None  # as `VariantHabits`'; None keeps the parent's (as does the next field)
    first_solve_coefficients: tuple[int, ...] | None = None

    def traces(self) -> VariantHabits:
        """The parent's trace probabilities with this continuation's changes."""
        changes = {"p_keep": self.p_keep, "p_keep_wrong": self.p_keep_wrong}
        for name in ("p_first_solve", "first_solve_coefficients"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return VariantHabits.of(self.parent, **changes)

    def key(self) -> str:
        own = {k: v for k, v in asdict(self).items() if k != "parent"}
        for name in ("p_first_solve", "first_solve_coefficients"):
            if own[name] is None:  # left to the parent: unhashed, so that entries made before the field still match
                del own[name]
        return f"{self.parent.key()}-{hashlib.sha256(json.dumps(own, sort_keys=True).encode()).hexdigest()[:12]}"


def build_variant(recipe: EmbeddedRecipe | ContinuedRecipe, cache_dir: str | None = None) -> str:
    """The path of `recipe`'s base model, built (its parent first) and cached on first use."""
    if isinstance(recipe, EmbeddedRecipe):
        return build_base_model(recipe, cache_dir)
    parent_path = build_variant(recipe.parent, cache_dir)

    def make():
        model, tokenizer = AutoModelForCausalLM.from_pretrained(parent_path), build_tokenizer()
        traces = recipe.traces()
        model = pretrain(
            model, tokenizer, traces, recipe.steps, recipe.learning_rate, recipe.seed, variant_solver_trace
        )
        return model, tokenizer

    return cached_model(f"embedded-{recipe.key()}", make, asdict(recipe), cache_dir)


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

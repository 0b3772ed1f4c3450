"""The variant base models of benchmarks/reproduce.py's tasks: the embedded default base continued on changed traces.

Continuing keeps the steps the parent learned: pretrained from scratch with a turn-1 habit on half of the problems,
the base computed the check's sum right 60% of the time and its solves after a "no" were right 29% of the time
(docs/results.md). Only the benchmarks use these; the library keeps the default base (`score_trl.data`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from transformers import AutoModelForCausalLM

from score_trl.data import EmbeddedRecipe, build_base_model, build_tokenizer, cached_model, pretrain


__all__ = ["COPY_VARIANT", "VARIANTS", "ContinuedRecipe", "build_variant"]


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


def build_variant(recipe: EmbeddedRecipe | ContinuedRecipe, cache_dir: str | None = None) -> str:
    """The path of `recipe`'s base model, built (its parent first) and cached on first use."""
    if isinstance(recipe, EmbeddedRecipe):
        return build_base_model(recipe, cache_dir)
    parent_path = build_variant(recipe.parent, cache_dir)

    def make():
        model, tokenizer = AutoModelForCausalLM.from_pretrained(parent_path), build_tokenizer()
        return pretrain(model, tokenizer, recipe.traces(), recipe.steps, recipe.learning_rate, recipe.seed), tokenizer

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

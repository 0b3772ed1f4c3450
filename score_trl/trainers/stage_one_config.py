from __future__ import annotations

from dataclasses import dataclass, field

from .multi_turn_rloo_config import MultiTurnRLOOConfig


# The paper's MATH setting: a strong KL on turn 1, the usual weak one after (its MBPP setting: [0.25, 0.01]).
STAGE_ONE_TURN_BETAS = (0.1, 0.01)


@dataclass
class StageOneConfig(MultiTurnRLOOConfig):
    r"""
    Configuration for [`StageOneTrainer`], SCoRe's Stage I: reward on the last turn only, a strong KL pinning turn 1
    to the base model and the usual weak KL on later turns.

    Same fields as [`MultiTurnRLOOConfig`], but `alpha`, Stage II's reward shaping, which Stage I does not have: it is
    0 and another value is refused. Defaults follow the paper's MATH setting (turn 1: 0.1, turn 2: 0.01); its MBPP
    setting uses `turn_betas=[0.25, 0.01]`.

    `turn_discount` keeps its meaning here: turn 1's return is `turn_discount * r2` instead of 0, the gradient of
    Stage I's objective `E[r2]` taken over the first attempt too, so turn 1 is pushed (against its strong KL) toward
    first attempts that turn 2 corrects. The default 0 leaves turn 1 only its KL, as the paper's per-turn returns
    do. With the discount at 0, turn 1's advantages are 0, so a weight on them other than 1 is refused as meaningless.

    Parameters:
        turn_betas (`list[float]` or `None`, *optional*, defaults to `None`):
            Per-turn KL weights: strong on turn 1, weak afterwards. None: `[0.1, 0.01]`, and 0.01 on every turn after
            the second with `num_turns > 2`.
        alpha (`float`, *optional*, defaults to `0.0`):
            Not used: Stage I shapes no reward (turn 1 has none, turn 2 gets r2). Any other value is refused.
    """

    turn_betas: list[float] | None = field(
        default=None,
        metadata={
            "help": "Per-turn KL weights: strong on turn 1 (paper: 0.1 MATH, 0.25 MBPP), weak after. None: 0.1 on "
            "turn 1 and 0.01 on every later turn."
        },
    )
    alpha: float = field(
        default=0.0,
        metadata={"help": "Not used: Stage I shapes no reward (turn 2 trains on r2). Any other value is refused."},
    )

    @staticmethod
    def default_turn_betas(num_turns: int) -> list[float]:
        """Stage I's KL weights when none are set: strong on turn 1, weak on every later turn."""
        strong, weak = STAGE_ONE_TURN_BETAS
        return [strong] + [weak] * (num_turns - 1)

    def __post_init__(self):
        if self.turn_betas is None:
            self.turn_betas = self.default_turn_betas(self.num_turns)
        super().__post_init__()
        if self.alpha != 0.0:
            raise ValueError(
                f"alpha={self.alpha}: Stage I shapes no reward (turn 1 gets none, turn 2 gets r2), so alpha would be "
                "ignored. It is Stage II's (MultiTurnRLOOConfig): leave it at 0 here."
            )
        if self.turn_discount == 0.0 and self.turn_weights[0] != 1.0:
            raise ValueError(
                f"turn_weights={self.turn_weights}: in Stage I with turn_discount=0, turn 1 gets no reward term, so "
                "its advantages are 0 and a weight on them changes nothing. Leave turn 1's weight at 1.0, or set "
                "turn_discount > 0 to train turn 1 on turn 2's reward."
            )

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

    Same fields as [`MultiTurnRLOOConfig`]; `alpha` is not used. Defaults follow the paper's MATH setting
    (turn 1: 0.1, turn 2: 0.01); its MBPP setting uses `turn_betas=[0.25, 0.01]`.

    Parameters:
        turn_betas (`list[float]`, *optional*, defaults to `[0.1, 0.01]`):
            Per-turn KL weights: strong on turn 1, weak afterwards.
    """

    turn_betas: list[float] = field(
        default_factory=lambda: list(STAGE_ONE_TURN_BETAS),
        metadata={"help": "Per-turn KL weights: strong on turn 1 (paper: 0.1 MATH, 0.25 MBPP), weak (0.01) after."},
    )

from __future__ import annotations

import torch

from .multi_turn_rloo_trainer import MultiTurnRLOOTrainer
from .returns import discounted_returns, stage_one_returns
from .stage_one_config import StageOneConfig


class StageOneTrainer(MultiTurnRLOOTrainer):
    """
    SCoRe Stage I (Kumar et al., 2024): an initialisation for self-correction that does not collapse.

    The only change from [`MultiTurnRLOOTrainer`] is the returns: turn 1 gets no reward term, only its (strong) KL to
    the base model, and later turns their own reward. Turn 2 thus learns to correct the base model's first attempts
    without moving them. Defaults (in [`StageOneConfig`]): `turn_betas=[0.1, 0.01]`.

    Example:

    ```python
    >>> from score_trl import StageOneConfig, StageOneTrainer
    >>> from score_trl.rewards import math_reward

    >>> trainer = StageOneTrainer(
    ...     model="Qwen/Qwen2.5-Math-1.5B-Instruct",
    ...     reward_funcs=math_reward,
    ...     args=StageOneConfig(output_dir="score-stage1", num_generations=4),
    ...     train_dataset=dataset,
    ... )  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names = ["trl", "score", "self-correction", "score-stage-1"]
    _name = "SCoRe (Stage I)"
    _config_class = StageOneConfig

    def compute_turn_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Stage I: 0 on turn 1, each later turn's own reward; `args.turn_discount` > 0 gives turn 1 that much of
        turn 2's reward."""
        return discounted_returns(stage_one_returns(rewards), self.args.turn_discount)

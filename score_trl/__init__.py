"""score-trl: SCoRe (Kumar et al., 2024, arXiv:2409.12917) self-correction training on top of TRL."""

from .metrics import (
    accuracy,
    answer_changed_rate,
    edit_distance_ratio,
    self_correction_metrics,
    transition_rates,
)
from .prompts import CODE_CORRECTION_INSTRUCTION, MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT
from .trainers import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer


__version__ = "0.1.0.dev0"

__all__ = [
    "CODE_CORRECTION_INSTRUCTION",
    "MATH_CORRECTION_INSTRUCTION",
    "MATH_SYSTEM_PROMPT",
    "MultiTurnRLOOConfig",
    "MultiTurnRLOOTrainer",
    "StageOneConfig",
    "StageOneTrainer",
    "accuracy",
    "answer_changed_rate",
    "edit_distance_ratio",
    "self_correction_metrics",
    "transition_rates",
]

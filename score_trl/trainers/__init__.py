from .multi_turn_rloo_config import MultiTurnRLOOConfig
from .multi_turn_rloo_trainer import MultiTurnRLOOTrainer
from .stage_one_config import StageOneConfig
from .stage_one_trainer import StageOneTrainer


__all__ = ["MultiTurnRLOOConfig", "MultiTurnRLOOTrainer", "StageOneConfig", "StageOneTrainer"]

"""The per-turn KL weights' seam in TRL's loss: a float that stands in for `GRPOTrainer.beta`."""

from __future__ import annotations

import torch


__all__ = ["TurnWeightedBeta"]


class TurnWeightedBeta(float):
    """Stands in for `GRPOTrainer.beta` while the loss is computed.

    TRL 1.16's `_compute_loss` adds `self.beta * per_token_kl` with a scalar beta and has no hook for a per-token
    weight. This float compares like the scalar (TRL's `beta != 0` checks) and, multiplied by the (B, T) per-token
    KL, returns it weighted per turn; it keeps the KL it saw for the per-turn KL logs.
    """

    def __new__(cls, value: float, weights: torch.Tensor):
        obj = super().__new__(cls, value)
        obj.weights, obj.per_token_kl = weights, None
        return obj

    def __mul__(self, other):
        if isinstance(other, torch.Tensor) and other.shape == self.weights.shape:
            self.per_token_kl = other.detach()
            return self.weights.to(other.dtype) * other
        return float(self) * other

    __rmul__ = __mul__

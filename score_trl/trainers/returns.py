"""Per-turn returns and leave-one-out advantages: the arithmetic of SCoRe's two stages, as pure tensor functions.

Rewards and returns are (N, num_turns) tensors, N = prompts x num_generations with each prompt's samples adjacent.
NaN marks a sample a verifier could not judge: it gets a zero advantage and is left out of its group's baselines.
"""

from __future__ import annotations

import torch


__all__ = ["leave_one_out_advantages", "shaped_returns", "stage_one_returns", "weighted_rewards"]


def weighted_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, num_turns, num_funcs) -> (N, num_turns): the reward functions summed with `weights`, NaN ("cannot judge")
    counting as 0 unless every function declined, which leaves NaN."""
    rewards = (rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=-1)
    rewards[torch.isnan(rewards_per_func).all(dim=-1)] = torch.nan
    return rewards


def stage_one_returns(rewards: torch.Tensor) -> torch.Tensor:
    """Stage I: no reward term on turn 1 (only its strong KL acts); every later turn gets its own reward."""
    returns = rewards.clone()
    returns[:, 0] = 0.0
    return returns


def shaped_returns(rewards: torch.Tensor, alpha: float) -> torch.Tensor:
    """Stage II: turn 1 gets r1; turn k > 1 gets r_k + alpha * (r_k - r_{k-1}), rewarding i->c and punishing c->i."""
    returns = rewards.clone()
    returns[:, 1:] = rewards[:, 1:] + alpha * (rewards[:, 1:] - rewards[:, :-1])
    return returns


def leave_one_out_advantages(returns: torch.Tensor, num_generations: int) -> torch.Tensor:
    """RLOO: each sample's return minus the mean return of the other samples of the same prompt, per turn.

    Samples with a NaN return get 0 and are left out of the others' baselines; a sample with no judged peer gets 0.
    """
    grouped = returns.reshape(-1, num_generations, *returns.shape[1:])
    judged = ~torch.isnan(grouped)
    values = torch.where(judged, grouped, torch.zeros_like(grouped))
    peers = judged.sum(dim=1, keepdim=True) - judged.long()
    baseline = (values.sum(dim=1, keepdim=True) - values) / peers.clamp(min=1)
    advantages = torch.where(judged & (peers > 0), values - baseline, torch.zeros_like(values))
    return advantages.reshape(returns.shape)

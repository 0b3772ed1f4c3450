"""Per-turn returns and leave-one-out advantages: the arithmetic of SCoRe's two stages, as pure tensor functions.

Rewards and returns are (N, num_turns) tensors, N = prompts x num_generations with each prompt's samples adjacent.
NaN marks a sample a verifier could not judge: it gets a zero advantage and is left out of its group's baselines.

A trainer's returns are `discounted_returns(stage_returns, turn_discount)`, where the stage's per-turn rewards are
`stage_one_returns` or `shaped_returns`; its advantages are `weighted_advantages(leave_one_out_advantages(...),
turn_weights)`. With the defaults (discount 0, weights 1) both are the identity: the paper's per-turn returns.
"""

from __future__ import annotations

import torch


__all__ = [
    "discounted_returns",
    "leave_one_out_advantages",
    "shaped_returns",
    "stage_one_returns",
    "weighted_advantages",
    "weighted_rewards",
]


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


def discounted_returns(turn_rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """Reward-to-go across turns: `G_k = rhat_k + discount * G_{k+1}`, from the per-turn (shaped) rewards `rhat`.

    Discount 0 is the paper's per-turn return (each turn its own reward), returned as given: a NaN on a later turn
    then leaves earlier turns judged. With discount > 0 an earlier turn's return holds the later turns' (shaped)
    rewards, so a later turn that could not be judged makes the earlier ones unjudged too (NaN).

    In Stage II with 2 turns, `G_1 = r1 + discount * (r2 + alpha * (r2 - r1)) = (1 - discount * alpha) * r1 +
    discount * (1 + alpha) * r2`: with `discount * alpha > 1` a right first attempt lowers turn 1's return.
    """
    if discount == 0.0:
        return turn_rewards.clone()
    returns = turn_rewards.clone()
    for turn in range(returns.size(1) - 2, -1, -1):
        returns[:, turn] = turn_rewards[:, turn] + discount * returns[:, turn + 1]
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


def weighted_advantages(advantages: torch.Tensor, turn_weights: torch.Tensor | list[float]) -> torch.Tensor:
    """Each turn's advantages times its weight, (N, num_turns) x (num_turns,): scales that turn's policy gradient.

    `[1, 1 + alpha]` on unshaped returns gives turn 2 the expected gradient of `shaped_returns` with `alpha` (the
    bonus's `- alpha * r1` adds variance, not direction: tests/test_returns.py computes both exactly).
    """
    weights = torch.as_tensor(turn_weights, dtype=advantages.dtype, device=advantages.device)
    if weights.shape != advantages.shape[1:]:
        raise ValueError(f"{weights.numel()} turn weights for advantages of {advantages.size(1)} turns.")
    return advantages * weights

import math

import pytest
import torch

from score_trl.trainers.returns import leave_one_out_advantages, shaped_returns, stage_one_returns, weighted_rewards


# the four (r1, r2) cases: i->c, c->c, c->i, i->i
REWARDS = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])


def test_stage_two_shaped_returns_by_hand():
    alpha = 10.0
    returns = shaped_returns(REWARDS, alpha)
    assert returns[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]  # turn 1: r1
    assert returns[:, 1].tolist() == [11.0, 1.0, -10.0, 0.0]  # r2 + 10 (r2 - r1)


def test_stage_one_returns_by_hand():
    returns = stage_one_returns(REWARDS)
    assert returns[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0]  # only the KL acts on turn 1
    assert returns[:, 1].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_leave_one_out_by_hand():
    # one prompt, 4 samples, turn-2 returns 11, 1, -10, 0
    adv = leave_one_out_advantages(shaped_returns(REWARDS, 10.0), num_generations=4)
    assert adv[0, 1].item() == pytest.approx(11 - (1 - 10 + 0) / 3)  # 14
    assert adv[2, 1].item() == pytest.approx(-10 - (11 + 1 + 0) / 3)  # -14
    assert adv[1, 0].item() == pytest.approx(1 - (0 + 1 + 0) / 3)
    # two prompts of two samples: baselines never cross prompts
    adv2 = leave_one_out_advantages(torch.tensor([1.0, 0.0, 5.0, 5.0]), num_generations=2)
    assert adv2.tolist() == [1.0, -1.0, 0.0, 0.0]


def test_leave_one_out_skips_unjudged_samples():
    nan = math.nan
    adv = leave_one_out_advantages(torch.tensor([1.0, nan, 0.0, 1.0, nan, nan]), num_generations=3)
    assert adv.tolist() == [1.0, 0.0, -1.0, 0.0, 0.0, 0.0]  # a lone judged sample has no baseline: 0


def test_nan_first_turn_makes_the_shaped_turn_unjudged():
    returns = shaped_returns(torch.tensor([[math.nan, 1.0]]), 10.0)
    assert math.isnan(returns[0, 1].item())


def test_weighted_rewards_sum_functions_and_keep_unjudged_as_nan():
    per_func = torch.tensor([[[1.0, 0.5], [0.0, float("nan")]], [[float("nan"), float("nan")], [1.0, 1.0]]])
    rewards = weighted_rewards(per_func, torch.tensor([2.0, 1.0]))
    assert rewards[0].tolist() == [2.5, 0.0]  # one function declined: the other's weighted reward counts
    assert torch.isnan(rewards[1, 0]) and rewards[1, 1] == 3.0  # every function declined: cannot judge

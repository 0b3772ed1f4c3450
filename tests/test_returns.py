import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from score_trl import MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer
from score_trl.trainers.returns import (
    discounted_returns,
    leave_one_out_advantages,
    shaped_returns,
    stage_one_returns,
    weighted_advantages,
    weighted_rewards,
)

from .test_trainers import make_args


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


def test_discounted_returns_by_hand():
    shaped = shaped_returns(REWARDS, 10.0)  # turn 2: [11, 1, -10, 0]
    assert discounted_returns(shaped, 0.0).tolist() == shaped.tolist()  # the paper's: each turn its own
    assert discounted_returns(shaped, 1.0)[:, 0].tolist() == [11.0, 2.0, -9.0, 0.0]  # r1 + G2
    assert discounted_returns(shaped, 0.5)[:, 0].tolist() == [5.5, 1.5, -4.0, 0.0]  # r1 + G2 / 2
    assert discounted_returns(shaped, 0.5)[:, 1].tolist() == shaped[:, 1].tolist()  # the last turn: its own
    # Stage I: turn 1 gets gamma * r2 instead of 0
    assert discounted_returns(stage_one_returns(REWARDS), 1.0)[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    # three turns, alpha 1: rhat = [0, 1 + 1 * (1 - 0), 1 + 1 * (1 - 1)] = [0, 2, 1]; G3 = 1, G2 = 2.5, G1 = 1.25
    three = discounted_returns(shaped_returns(torch.tensor([[0.0, 1.0, 1.0]]), 1.0), 0.5)
    assert three.tolist() == [[1.25, 2.5, 1.0]]


def test_discounted_returns_keep_unjudged_turns_apart_only_without_discount():
    rewards = torch.tensor([[1.0, math.nan]])
    assert discounted_returns(rewards, 0.0)[0, 0].item() == 1.0  # turn 1 is judged on its own
    assert math.isnan(discounted_returns(rewards, 0.5)[0, 0].item())  # its return needs turn 2's reward


def test_weighted_advantages_by_hand():
    advantages = torch.tensor([[1.0, -2.0], [-1.0, 2.0]])
    assert weighted_advantages(advantages, [1.0, 4.0]).tolist() == [[1.0, -8.0], [-1.0, 8.0]]
    assert weighted_advantages(advantages, [0.0, 1.0]).tolist() == [[0.0, -2.0], [0.0, 2.0]]
    with pytest.raises(ValueError, match="3 turn weights for advantages of 2 turns"):
        weighted_advantages(advantages, [1.0, 1.0, 1.0])


class TestTurnDiscountAndWeightsConfig:
    def test_defaults_are_the_papers(self, tmp_path):
        args = make_args(tmp_path)
        assert args.turn_discount == 0.0 and args.turn_weights == [1.0, 1.0]
        assert make_args(tmp_path, num_turns=3, turn_betas=[0.01]).turn_weights == [1.0, 1.0, 1.0]
        assert make_args(tmp_path, turn_weights=[2.0]).turn_weights == [2.0, 2.0]  # one value: every turn
        assert make_args(tmp_path, StageOneConfig).turn_weights == [1.0, 1.0]

    @pytest.mark.parametrize("discount", [-0.1, 1.5])
    def test_discount_outside_zero_one(self, tmp_path, discount):
        with pytest.raises(
            ValueError, match=rf"turn_discount={discount}: a discount across turns must be in \[0, 1\]"
        ):
            make_args(tmp_path, turn_discount=discount)

    @pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [1.0, -1.0]])
    def test_weights_one_non_negative_per_turn(self, tmp_path, weights):
        with pytest.raises(
            ValueError, match=r"turn_weights=.*one non-negative advantage weight per turn \(2 values\)"
        ):
            make_args(tmp_path, turn_weights=weights)

    def test_all_zero_weights(self, tmp_path):
        with pytest.raises(ValueError, match="every weight 0 no turn gets a policy gradient"):
            make_args(tmp_path, turn_weights=[0.0, 0.0])

    def test_stage_one_turn_one_weight_needs_a_discount(self, tmp_path):
        with pytest.raises(
            ValueError, match="Stage I with turn_discount=0, turn 1 gets no reward term.*turn_discount > 0"
        ):
            make_args(tmp_path, StageOneConfig, turn_weights=[2.0, 1.0])
        args = make_args(tmp_path, StageOneConfig, turn_weights=[2.0, 1.0], turn_discount=1.0)
        assert args.turn_weights == [2.0, 1.0]  # with a discount turn 1 has advantages to weigh
        assert make_args(tmp_path, StageOneConfig, turn_weights=[1.0, 3.0]).turn_weights == [1.0, 3.0]


# ----- the analysis of issue 20, checked exactly on a tabular two-turn policy ------------------------------------------
# Three first answers y1 (0 is right) and three second answers y2 per y1, softmax over tabular logits; r2 is a table.
# Every group of `num_generations` episodes is enumerated, so the expected policy gradient of the project's own
# returns -> leave-one-out advantages -> turn weights is computed exactly (float64), with no sampling.
R1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
R2 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # r2[y1, y2]
ALPHA = 3.0


def _expected_gradients(trainer_cls=MultiTurnRLOOTrainer, alpha=0.0, discount=0.0, weights=(1.0, 1.0), groups=3):
    """Exact E[sum over a group of sum_k A_k * grad log pi(y_k | context)]: (turn 1's gradient, turn 2's), which are
    the gradients on the turn-1 and turn-2 logits, as the policy is tabular."""
    generator = torch.Generator().manual_seed(0)
    logits1 = torch.randn(3, generator=generator, dtype=torch.float64).requires_grad_()
    logits2 = torch.randn(3, 3, generator=generator, dtype=torch.float64).requires_grad_()
    logp1, logp2 = logits1.log_softmax(-1), logits2.log_softmax(-1)
    episodes = torch.tensor(list(itertools.product(range(3), range(3))))  # (9, 2): every (y1, y2)
    episode_logp = logp1[episodes[:, 0]] + logp2[episodes[:, 0], episodes[:, 1]]
    group = torch.tensor(list(itertools.product(range(9), repeat=groups))).reshape(-1)  # episode of each sample
    y1, y2 = episodes[group, 0], episodes[group, 1]
    rewards = torch.stack([R1[y1], R2[y1, y2]], dim=1)
    stub = SimpleNamespace(args=SimpleNamespace(alpha=alpha, turn_discount=discount))
    returns = trainer_cls.compute_turn_returns(stub, rewards)
    advantages = weighted_advantages(leave_one_out_advantages(returns, groups), list(weights))
    probability = episode_logp[group].detach().reshape(-1, groups).sum(dim=1).exp()  # of each whole group
    assert probability.sum().item() == pytest.approx(1.0)
    surrogate = (advantages[:, 0] * logp1[y1] + advantages[:, 1] * logp2[y1, y2]).reshape(-1, groups).sum(dim=1)
    (probability * surrogate).sum().backward()
    return logits1.grad, logits2.grad, logp1.detach().exp(), logp2.detach().exp()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_shaping_scales_turn_two_gradient_by_one_plus_alpha_and_leaves_turn_one():
    turn1, turn2, _, _ = _expected_gradients(alpha=0.0)
    shaped1, shaped2, _, _ = _expected_gradients(alpha=ALPHA)
    assert turn2.norm() > 1e-2 and turn1.norm() > 1e-2  # a gradient to compare, on both turns
    assert _close(shaped2, (1.0 + ALPHA) * turn2)  # the bonus's -alpha * r1 has no expected turn-2 gradient
    assert _close(shaped1, turn1)  # gamma = 0: turn 1 never sees the bonus, so its optimum is unchanged
    # so a turn weight of 1 + alpha on unshaped returns has the shaping's expected gradient on both turns
    weighted1, weighted2, _, _ = _expected_gradients(alpha=0.0, weights=(1.0, 1.0 + ALPHA))
    assert _close(weighted2, shaped2) and _close(weighted1, shaped1)


def test_a_turn_discount_changes_turn_ones_gradient():
    plain1, _, _, _ = _expected_gradients(alpha=ALPHA, discount=0.0)
    turn1, turn2, p1, p2 = _expected_gradients(alpha=ALPHA, discount=1.0)
    assert (turn1 - plain1).norm() > 0.1 * plain1.norm()
    # what it is, derived without the project's code: the leave-one-out baseline has no expected gradient, so
    # E[A1 grad log pi(y1)] = E[G1 grad log pi(y1)] per sample, G1 = (1 - alpha) r1 + (1 + alpha) E[r2 | y1]
    g1 = (1.0 - ALPHA) * R1 + (1.0 + ALPHA) * (p2 * R2).sum(dim=1)
    score = torch.eye(3, dtype=torch.float64) - p1  # grad log pi(y1) for each y1, as rows
    assert _close(turn1, 3 * (p1[:, None] * g1[:, None] * score).sum(dim=0))  # 3 samples per group
    # and with gamma * alpha > 1 a right first attempt is pushed down, where without the discount it is pushed up
    assert turn1[0] < 0 < plain1[0]
    _, unchanged2, _, _ = _expected_gradients(alpha=ALPHA, discount=0.0)
    assert _close(turn2, unchanged2)  # the last turn's return has nothing to discount


def test_stage_one_turn_one_gets_a_gradient_only_with_a_discount():
    turn1, _, _, _ = _expected_gradients(StageOneTrainer, discount=0.0)
    assert _close(turn1, torch.zeros(3, dtype=torch.float64))  # only the KL acts on turn 1
    turn1, _, p1, p2 = _expected_gradients(StageOneTrainer, discount=1.0)
    expected = 3 * (p1[:, None] * (p2 * R2).sum(dim=1)[:, None] * (torch.eye(3, dtype=torch.float64) - p1)).sum(0)
    assert turn1.norm() > 1e-2 and _close(turn1, expected)  # Stage I's E[r2] differentiated through y1 too

"""The multi-turn trainers' logs: per-turn rewards, returns and accuracy, the paper's self-correction metrics, and a
completions table that shows the advantages the loss uses."""

from __future__ import annotations

import math

import torch
from trl.trainer.utils import nanstd

from ..metrics import answer_changed, edit_distance_ratio, transition_rates
from ..rewards import ANSWER_FORMATS
from .trl_internals import TRL_LAST_TURN_METRICS, check_logged_once
from .turn_batch import TurnBatch


__all__ = ["TurnMetricsMixin"]


class TurnMetricsMixin:
    """Logging for a `GRPOTrainer` subclass that trains several turns per episode (see docs/trainers.md). The
    answer-changed logs find and compare final answers as `args.answer_format` names (`ANSWER_FORMATS`)."""

    def _global_mean(self, values: list[float]) -> float:
        """Mean over every process's values; NaN when there are none (an undefined rate, not a zero one)."""
        device = self.accelerator.device
        totals = self.accelerator.reduce(torch.tensor([sum(values), len(values)], dtype=torch.float32, device=device))
        return (totals[0] / totals[1]).item() if totals[1] > 0 else float("nan")

    def _log_if_defined(self, mode: str, key: str, value: float) -> None:
        """Log a rate only where it is defined: a NaN would read as a value, and TRL logs a window of NaNs as None."""
        if not math.isnan(value):
            self._metrics[mode][key].append(value)

    def _log_turn_metrics(
        self, mode: str, batch: TurnBatch, num_generations: int, logged_before: dict[str, int]
    ) -> None:
        """The per-turn logs of `batch`, in place of TRL's last-turn ones; `logged_before` holds how many values each
        metric had before TRL logged this batch's."""
        metrics = self._metrics[mode]
        per_func = [f"rewards/{name}/{stat}" for name in self.reward_func_names for stat in ("mean", "std")]
        replaced = (*TRL_LAST_TURN_METRICS, *per_func)
        check_logged_once(metrics, logged_before, replaced)  # so that the value removed is this batch's
        for key in replaced:
            metrics[key].pop()  # appended by GRPOTrainer for this batch
            if not metrics[key]:
                del metrics[key]
        rewards, returns, advantages = batch.rewards, batch.returns, batch.advantages
        judged = ~torch.isnan(rewards)
        correct = rewards >= self.args.correct_threshold
        spread = torch.nan_to_num(returns).reshape(-1, num_generations, returns.size(1)).std(dim=1)
        for turn in range(batch.num_turns):
            prefix = f"turn{turn + 1}/"
            metrics[prefix + "reward"].append(torch.nanmean(rewards[:, turn]).item())
            metrics[prefix + "reward_std"].append(nanstd(rewards[:, turn]).item())
            for i, name in enumerate(self.reward_func_names):
                mean = torch.nanmean(batch.rewards_per_func[:, turn, i]).item()
                metrics[f"{prefix}rewards/{name}/mean"].append(mean)
            metrics[prefix + "return"].append(torch.nanmean(returns[:, turn]).item())
            metrics[prefix + "frac_return_zero_std"].append((spread[:, turn] == 0).float().mean().item())
            # the size of turn K's policy-gradient signal, after its `turn_weights` entry: how the weight (or alpha)
            # scales this turn against the others
            metrics[prefix + "advantage_abs"].append(advantages[:, turn].abs().mean().item())
            self._log_if_defined(mode, prefix + "accuracy", correct[judged[:, turn], turn].float().mean().item())
            metrics[prefix + "unscored"].append((~judged[:, turn]).float().mean().item())
            metrics[prefix + "clipped_ratio"].append(self._global_mean(batch.rollout.truncated[turn]))
            if turn > 0:  # how often this turn's instruction told something about the last attempt (0: intrinsic)
                metrics[prefix + "feedback_rate"].append(self._global_mean(batch.rollout.told[turn - 1]))
            self._logs["extra"][prefix + "reward"].extend(rewards[:, turn].tolist())
            self._logs["extra"][prefix + "advantage"].extend(advantages[:, turn].tolist())
        # TRL's `advantage` column holds its own normalised advantages of the last turn's reward: show ours.
        # (A deque of `generation_batch_size` entries: an evaluation batch can be larger and kept only in part.)
        logged = self._logs["advantages"]
        for _ in range(min(advantages.size(0), len(logged))):
            logged.pop()
        logged.extend(advantages[:, -1].tolist())

        both = judged[:, 0] & judged[:, -1]
        for key, value in transition_rates(correct[both, 0].tolist(), correct[both, -1].tolist()).items():
            metrics[f"self_correction/{key}"].append(value)
        if batch.num_turns > 2:  # does each turn add, or only repeat the one before?
            for turn in range(1, batch.num_turns):
                pair = judged[:, turn - 1] & judged[:, turn]
                rates = transition_rates(correct[pair, turn - 1].tolist(), correct[pair, turn].tolist())
                for key, value in rates.items():
                    metrics[f"self_correction/turn{turn}_to_{turn + 1}/{key}"].append(value)
        first, last = batch.rollout.texts[0], batch.rollout.texts[-1]
        answers = ANSWER_FORMATS["math" if self.args.answer_format is None else self.args.answer_format]
        changed = [answer_changed(a, b, **answers) for a, b in zip(first, last, strict=True)]
        local = batch.local_rows(self.accelerator.process_index)
        wrong_first = (judged[local, 0] & ~correct[local, 0]).tolist()
        metrics["self_correction/changed_rate"].append(self._global_mean(changed))
        # The paper's collapse signal: how often a wrong first attempt is changed at all (undefined when none was wrong).
        changed_when_wrong = self._global_mean([c for c, wrong in zip(changed, wrong_first, strict=True) if wrong])
        self._log_if_defined(mode, "self_correction/changed_when_wrong", changed_when_wrong)
        ratios = [edit_distance_ratio(a, b) for a, b in zip(first, last, strict=True)]
        metrics["self_correction/edit_ratio"].append(self._global_mean(ratios))

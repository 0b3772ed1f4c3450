"""The per-batch records of the multi-turn trainers, each made whole by one function and never changed after:
`TurnRollout` (what `MultiTurnRLOOTrainer._roll_out` generated) and `TurnBatch` (that rollout scored by
`MultiTurnRLOOTrainer._score`: rewards, returns and advantages per turn), which the loss and the logs read."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch

from ..rollout import MultiTurnRollout, TurnInstructions


__all__ = ["TurnBatch", "TurnRollout"]


@dataclass(frozen=True)
class TurnRollout(MultiTurnRollout):
    """A `MultiTurnRollout` with what the trainer showed and read at each turn.

    Per-turn lists are indexed `[turn][sample]`: `instructions[k]` are the instructions shown before attempt k+2,
    `told[k]` whether those instructions carried feedback, `texts[k]` the decoded attempts k+1, `truncated[k]` whether attempt k+1 ended in no end-of-turn token (cut at
    `max_completion_length`); `labels` give each completion token its turn (0 on instruction tokens).
    """

    instructions: list[list[str]]
    told: list[list[bool]]
    texts: list[list[str]]
    labels: list[list[int]]
    truncated: list[list[bool]]

    @classmethod
    def from_rollout(
        cls, rollout: MultiTurnRollout, shown: TurnInstructions, end_of_turn_ids: Collection[int]
    ) -> TurnRollout:
        """The record of `rollout` and of what `shown` decoded and showed between its turns."""
        truncated = [[not a or a[-1] not in end_of_turn_ids for a in attempts] for attempts in rollout.attempts]
        return cls(
            **vars(rollout),
            instructions=shown.shown,
            told=shown.told,
            texts=shown.texts,
            labels=rollout.turn_labels(),
            truncated=truncated,
        )

    def loss_mask(self, mask_truncated: bool) -> list[list[int]]:
        """Per completion token: 1 if it trains, 0 if it is only attended to (instructions; and, with
        `mask_truncated`, every token of a truncated attempt, while the other attempts of the episode still train)."""
        rows = []
        for i, labels in enumerate(self.labels):
            cut = {turn + 1 for turn in range(self.num_turns) if mask_truncated and self.truncated[turn][i]}
            rows.append([int(label > 0 and label not in cut) for label in labels])
        return rows

    def trl_output(self, mask_truncated: bool) -> dict[str, list]:
        """What GRPOTrainer's `rollout_func` returns: the whole `y1 | s2 | y2` as one completion, `env_mask` 0 on
        the tokens that are attended to but carry no loss."""
        return {
            "prompt_ids": self.prompt_ids,
            "completion_ids": self.completion_ids(),
            "logprobs": self.completion_logprobs(),
            "env_mask": self.loss_mask(mask_truncated),
        }


@dataclass(frozen=True)
class TurnBatch:
    """A `TurnRollout` scored: per turn, every reward function's rewards, their weighted sum, the returns and the
    (leave-one-out, turn-weighted) advantages. The tensors hold every process's samples in process order,
    `(N, num_turns[, num_funcs])`; the rollout holds this process's."""

    rollout: TurnRollout
    rewards_per_func: torch.Tensor
    rewards: torch.Tensor
    returns: torch.Tensor
    advantages: torch.Tensor

    @property
    def num_turns(self) -> int:
        return self.rollout.num_turns

    def local_rows(self, process_index: int) -> slice:
        """This process's samples within the tensors, which hold every process's in process order."""
        n = len(self.rollout.prompt_ids)
        return slice(process_index * n, (process_index + 1) * n)

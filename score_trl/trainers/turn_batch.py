"""The per-batch record of the multi-turn trainers: one generation batch, from its rollout to its advantages."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch

from ..rollout import MultiTurnRollout


__all__ = ["TurnBatch"]


@dataclass
class TurnBatch(MultiTurnRollout):
    """A `MultiTurnRollout` and what the trainer derives from it, written once per generation batch.

    `MultiTurnRLOOTrainer._rollout` writes the rollout fields, `instructions`, `labels` and `truncated`;
    `_calculate_rewards` adds `texts` and `rewards_per_func`; `_generate_and_score_completions` adds `rewards`,
    `returns` and `advantages`, which the loss (through TRL's inputs) and the logs read. Per-turn lists are indexed
    `[turn][sample]` (local samples); the reward tensors hold every process's samples, `(N, num_turns[, num_funcs])`.
    """

    instructions: list[list[str]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    truncated: list[list[bool]] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)
    rewards_per_func: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    advantages: torch.Tensor | None = None

    @classmethod
    def from_rollout(
        cls, rollout: MultiTurnRollout, instructions: list[list[str]], end_of_turn_ids: Collection[int]
    ) -> TurnBatch:
        """The record of `rollout`: its turn labels, and which attempts ended in no end-of-turn token (cut at
        `max_completion_length`)."""
        truncated = [[not a or a[-1] not in end_of_turn_ids for a in attempts] for attempts in rollout.attempts]
        return cls(**vars(rollout), instructions=instructions, labels=rollout.turn_labels(), truncated=truncated)

    def loss_mask(self, mask_truncated: bool) -> list[list[int]]:
        """Per completion token: 1 if it trains, 0 if it is only attended to (instructions; and, with
        `mask_truncated`, every token of a truncated attempt, while the other attempts of the episode still train)."""
        rows = []
        for i, labels in enumerate(self.labels):
            cut = {turn + 1 for turn in range(self.num_turns) if mask_truncated and self.truncated[turn][i]}
            rows.append([int(label > 0 and label not in cut) for label in labels])
        return rows

    def local_rows(self, process_index: int) -> slice:
        """This process's samples within the reward tensors, which hold every process's in process order."""
        n = len(self.prompt_ids)
        return slice(process_index * n, (process_index + 1) * n)

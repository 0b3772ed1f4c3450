"""SCoRe's Stage II trainer: `GRPOTrainer` with a multi-turn rollout, per-turn rewards, returns and leave-one-out
advantages, and a per-turn KL weight. What it overrides of TRL, and what each override relies on:
`score_trl/trainers/trl_internals.py`."""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import torch
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.trainer.utils import pad

from ..metrics import format_table
from ..prompts import MATH_CORRECTION_INSTRUCTION
from ..rewards.feedback import FeedbackFunc
from ..rollout import TurnInstructions, TurnRenderer, generate_turns
from .kl_reference import kl_reference
from .multi_turn_rloo_config import MultiTurnRLOOConfig
from .returns import (
    discounted_returns,
    leave_one_out_advantages,
    shaped_returns,
    weighted_advantages,
    weighted_rewards,
)
from .trl_internals import (
    check_attributes,
    check_beta_was_applied,
    check_methods,
    check_reference_was_named,
    colocated_vllm_on_cpu,
    score_labelled_positions_on_cpu,
)
from .turn_batch import TurnBatch, TurnRollout
from .turn_kl import TurnWeightedBeta
from .turn_metrics import TurnMetricsMixin


SCORE_PAPER = {
    "title": "Training Language Models to Self-Correct via Reinforcement Learning",
    "id": "2409.12917",
    # docstyle-ignore
    "citation": textwrap.dedent("""\
        @inproceedings{kumar2025training,
            title        = {{Training Language Models to Self-Correct via Reinforcement Learning}},
            author       = {Aviral Kumar and Vincent Zhuang and Rishabh Agarwal and Yi Su and John D. Co-Reyes and Avi Singh and Kate Baumli and Shariq Iqbal and Colton Bishop and Rebecca Roelofs and Lei M. Zhang and Kay McKinney and Disha Shrivastava and Cosmin Paduraru and George Tucker and Doina Precup and Feryal Behbahani and Aleksandra Faust},
            booktitle    = {The Thirteenth International Conference on Learning Representations, {ICLR} 2025},
            year         = 2025,
            eprint       = {arXiv:2409.12917},
        }"""),
}


class MultiTurnRLOOTrainer(TurnMetricsMixin, GRPOTrainer):
    """
    SCoRe Stage II (Kumar et al., 2024): multi-turn on-policy RL for intrinsic self-correction.

    Each prompt is answered, shown an instruction (`args.turn_instruction`) and answered again. Every turn is scored
    by the reward functions separately; turn 1 trains on r1 and turn k > 1 on `r_k + alpha * (r_k - r_{k-1})`, each
    with leave-one-out (RLOO) advantages over the `num_generations` samples of its prompt and a per-token KL to the
    reference model weighted per turn (`args.turn_betas`). Instruction tokens are attended to but carry no loss.

    It subclasses [`~trl.GRPOTrainer`] for its generation backends (transformers, vLLM), its per-token loss and its
    logging; with the leave-one-out advantages it computes, the policy gradient is the RLOO estimator. Subclass and
    override [`get_turn_instruction`] or [`compute_turn_returns`] to adapt it to a new task.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer
    >>> from score_trl.rewards import math_reward

    >>> dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 2+2?"}], "answer": "4"}] * 8)
    >>> trainer = MultiTurnRLOOTrainer(
    ...     model="Qwen/Qwen2.5-Math-1.5B-Instruct",
    ...     reward_funcs=math_reward,
    ...     args=MultiTurnRLOOConfig(output_dir="score-stage2", num_generations=4),
    ...     train_dataset=dataset,
    ... )  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names = ["trl", "score", "self-correction", "rloo"]
    _name = "SCoRe (Stage II, multi-turn RLOO)"
    _paper = SCORE_PAPER
    _config_class = MultiTurnRLOOConfig

    def __init__(
        self,
        model,
        reward_funcs,
        args: MultiTurnRLOOConfig | None = None,
        feedback_func: FeedbackFunc | None = None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path or "model"
            args = self._config_class(f"{name.split('/')[-1]}-SCoRe")
        if not isinstance(args, MultiTurnRLOOConfig):
            raise TypeError(f"args must be a MultiTurnRLOOConfig, got {type(args).__name__}.")
        for split in ("train_dataset", "eval_dataset"):
            columns = getattr(kwargs.get(split), "column_names", None)
            if isinstance(columns, list) and "prompt" not in columns:
                raise ValueError(f"{split} has no `prompt` column (columns: {columns}): rename the problem column.")
        if kwargs.get("rollout_func") is not None:
            raise ValueError(f"{type(self).__name__} generates its turns itself: do not pass `rollout_func`.")
        check_methods()  # the TRL privates this trainer builds on (score_trl/trainers/trl_internals.py)
        score_labelled_positions_on_cpu()  # the LM head skips prompt and padding positions on a CPU
        with kl_reference(model, args, kwargs.get("peft_config")) as self._reference:
            try:
                with colocated_vllm_on_cpu(self, args):  # vLLM's CPU backend: its engine and weight sync
                    super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
                check_reference_was_named(self._reference, getattr(self, "_renamed", None))
            finally:  # the policy keeps its own name (model card, Hub), also when the construction failed
                if getattr(self, "_renamed", None) is not None:
                    config, name = self._renamed
                    config._name_or_path = name
                self._reference = self._renamed = None
        check_attributes(self)
        # Set after __init__: `rollout_func` is TRL's (experimental) hook for custom generation; passing it to
        # __init__ would only add a warning addressed to end users.
        self.rollout_func = self._rollout
        # TRL's `mask_truncated_completions` looks at the last token of the whole `y1 | s2 | y2` sequence and masks
        # every turn of it; the rollout masks each truncated attempt's own tokens instead (`TurnRollout.loss_mask`).
        self.mask_truncated_completions = False
        self.turn_renderer = TurnRenderer(
            self.processing_class, self.eos_token_ids, args.instruction_template, self.chat_template_kwargs
        )
        # Evaluation results ({name: metrics}) that the model card lists under the card TRL writes (score_trl.pipeline)
        self.model_card_metrics: dict[str, dict[str, float]] | None = None
        self._turn_betas = torch.tensor([0.0, *args.turn_betas])
        # None: the paper's intrinsic setting, the same instruction whatever the attempt (`get_turn_feedback`)
        self.feedback_func = feedback_func

    def create_accelerator_and_postprocess(self):
        # `transformers.Trainer.__init__` calls this once `self.model` is set, before GRPOTrainer builds the reference
        # model from `self.model.config._name_or_path`: the seam where the reference is named without copying TRL's
        # construction of it. The policy's own name is restored after `super().__init__`.
        super().create_accelerator_and_postprocess()
        reference = getattr(self, "_reference", None)
        if reference is not None:
            self._renamed = (self.model.config, self.model.config._name_or_path)
            self.model.config._name_or_path = reference

    # ----- the documented hooks ------------------------------------------------------------------------------------

    def get_turn_instruction(self, example: dict[str, Any], turn: int, attempts: Sequence[str] = ()) -> str:
        """The instruction shown before attempt `turn` (2, 3, ...) of `example` (a dataset row), after `attempts`,
        the texts of that sample's earlier attempts in order (empty where they are not known yet: evaluation renders
        every row's instructions before generating).

        Defaults to `args.turn_instruction` for every problem (unset: the paper's MATH instruction); override to read
        it from a column, or to answer the attempts.
        """
        return MATH_CORRECTION_INSTRUCTION if self.args.turn_instruction is None else self.args.turn_instruction

    def get_turn_feedback(self, examples: Sequence[dict], turn: int, attempts: list[str]) -> list[str | None]:
        """What to tell each sample about its last attempt before attempt `turn`, put in front of its instruction
        (None: nothing). `examples` are the samples' dataset rows, `attempts` their last attempts' texts.

        Defaults to the trainer's `feedback_func` (e.g. `score_trl.rewards.feedback.math_feedback`: "Your final
        answer X is wrong."), and to nothing without one: the paper's intrinsic setting. Override to tell more, e.g.
        from a trusted test runner; never echo an attempt unfiltered (docs/feedback.md).
        """
        if self.feedback_func is None:
            return [None] * len(attempts)
        return self.feedback_func(examples, attempts)

    def compute_turn_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Per-turn returns from per-turn rewards, both (num_samples, num_turns); NaN marks an unjudged sample.

        Stage II: turn 1 gets r1, turn k > 1 gets `r_k + alpha * (r_k - r_{k-1})`; then `args.turn_discount`
        carries later turns' shaped rewards back (0, the default, leaves each turn its own). An override decides the
        whole return, the discount included; `args.turn_weights` still scale the advantages.
        """
        return discounted_returns(shaped_returns(rewards, self.args.alpha), self.args.turn_discount)

    # ----- one generation batch: rolled out, scored, then handed to TRL ----------------------------------------------

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        logged_before = {key: len(values) for key, values in self._metrics[mode].items()}
        # The batch is made whole here, where the rows are at hand (TRL's rollout hook gets the prompts alone), and
        # is read by TRL's generation and reward steps, which hand it on (`_rollout`, `_calculate_rewards`).
        self._batch = batch = self._score(inputs, self._roll_out(inputs))
        output = super()._generate_and_score_completions(inputs)
        labels = pad(
            [torch.tensor(row) for row in batch.rollout.labels],
            padding_value=0,
            padding_side="right",
            pad_to_multiple_of=self.pad_to_multiple_of,
        ).to(output["completion_ids"].device)
        advantages = batch.advantages[batch.local_rows(self.accelerator.process_index)]
        per_turn = torch.cat([torch.zeros_like(advantages[:, :1]), advantages], dim=1).to(labels.device)
        output["advantages"] = per_turn.gather(1, labels)  # (B, T): each token gets its own turn's advantage
        output["turn_labels"] = labels
        self._log_turn_metrics(mode, batch, self._num_generations(), logged_before)
        return output

    def _roll_out(self, rows: list[dict]) -> TurnRollout:
        """Every turn of every sample: one batched generation per turn, each later turn after the instruction
        `get_turn_instruction` gives the row once the earlier attempts are known, led by `get_turn_feedback`'s
        message about the last one."""
        prompts = [row["prompt"] for row in rows]
        conversational = is_conversational({"prompt": prompts[0]})
        prompt_ids = self.turn_renderer.first_turn_ids(prompts)
        limit = self.args.max_prompt_length
        if limit is not None and max(map(len, prompt_ids)) > limit:
            raise ValueError(
                f"A prompt has {max(map(len, prompt_ids))} tokens, more than max_prompt_length={limit}. Filter long "
                "prompts out of the dataset or raise max_prompt_length."
            )
        shown = TurnInstructions(
            self.turn_renderer, rows, conversational, self.get_turn_instruction, self.get_turn_feedback
        )
        turns = generate_turns(self._generate_ids, prompt_ids, shown, self._num_generations(), self.args.num_turns)
        shown.finish(turns)
        return TurnRollout.from_rollout(turns, shown, self.eos_token_ids)

    def _score(self, rows: list[dict], rollout: TurnRollout) -> TurnBatch:
        """Each turn scored by the reward functions (TRL's reward step, once per turn, as the turn's prompt and
        completion), then the per-turn rewards, returns and advantages."""
        prompts = [row["prompt"] for row in rows]
        conversational = is_conversational({"prompt": prompts[0]})
        per_turn, turn_prompts = [], prompts
        for turn, texts in enumerate(rollout.texts):
            if turn > 0:
                turn_prompts = self.turn_renderer.next_turn_prompts(
                    turn_prompts, rollout.texts[turn - 1], rollout.instructions[turn - 1]
                )
            completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
            with self._turn_scoped_logs(turn + 1):
                per_turn.append(super()._calculate_rewards(rows, turn_prompts, completions, rollout.attempts[turn]))
        rewards_per_func = torch.stack(per_turn, dim=1)
        rewards = weighted_rewards(rewards_per_func, self.reward_weights)
        returns = self.compute_turn_returns(rewards)
        advantages = leave_one_out_advantages(returns, self._num_generations())
        return TurnBatch(
            rollout, rewards_per_func, rewards, returns, weighted_advantages(advantages, self.args.turn_weights)
        )

    def _rollout(self, prompts: list, trainer: GRPOTrainer | None = None) -> dict[str, list]:
        return self._batch.rollout.trl_output(self.args.mask_truncated_completions)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL logs these as its `reward` and computes its own advantages from them; `_log_turn_metrics` replaces
        # both logs per turn, and the loss reads the per-turn advantages `_generate_and_score_completions` sets.
        return self._batch.rewards_per_func[:, -1]

    def _generate_ids(self, prompt_ids: list[list[int]], num_generations: int):
        return self._generate_single_turn(prompt_ids, None, {}, num_generations)

    def _num_generations(self) -> int:
        return self.num_generations if self.model.training else self.num_generations_eval

    @contextlib.contextmanager
    def _turn_scoped_logs(self, turn: int):
        # Reward functions log extra columns once per call; scored once per turn, they get one column per turn.
        self._log_completion_extra = lambda column, values: GRPOTrainer._log_completion_extra(
            self, f"turn{turn}/{column}", values
        )
        self._log_metric = lambda name, value: GRPOTrainer._log_metric(self, f"turn{turn}/{name}", value)
        try:
            yield
        finally:
            del self._log_completion_extra, self._log_metric

    # ----- loss ------------------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        labels = inputs["turn_labels"]
        scalar_beta = self.beta
        if scalar_beta == 0.0:
            return super()._compute_loss(model, inputs)
        self.beta = TurnWeightedBeta(scalar_beta, self._turn_betas.to(labels.device)[labels])
        try:
            loss = super()._compute_loss(model, inputs)
            per_token_kl = self.beta.per_token_kl
        finally:
            self.beta = scalar_beta
        check_beta_was_applied(per_token_kl)
        mode = "train" if self.model.training else "eval"
        attended = inputs["completion_mask"].bool()
        for turn in range(1, self.args.num_turns + 1):
            in_turn = (labels == turn) & attended
            totals = self.accelerator.reduce(torch.stack([per_token_kl[in_turn].sum(), in_turn.sum().float()]))
            self._metrics[mode][f"turn{turn}/kl"].append((totals[0] / totals[1].clamp(min=1.0)).item())
        return loss

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.model_card_metrics and self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "a") as f:
                f.write("\n## Self-correction results\n\n" + format_table(self.model_card_metrics) + "\n")

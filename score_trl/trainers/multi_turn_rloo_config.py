from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from ..rewards import ANSWER_FORMATS


@dataclass
class MultiTurnRLOOConfig(GRPOConfig):
    r"""
    Configuration for [`MultiTurnRLOOTrainer`], SCoRe's Stage II: on-policy RL on every turn, with leave-one-out
    (RLOO) baselines and the shaped reward `r_k + alpha * (r_k - r_{k-1})` on turns after the first.

    Everything of [`~trl.GRPOConfig`] applies (generation, vLLM, logging, saving), except three fields the trainer's
    own per-turn leave-one-out advantages replace: `beta` is derived from `turn_betas` (set those instead),
    `scale_rewards` is `"none"` and `multi_objective_aggregation` is `"sum_then_normalize"` (weighted sum of the reward
    functions, then leave-one-out); other values are refused rather than ignored.

    Parameters:
        > Turns

        num_turns (`int`, *optional*, defaults to `2`):
            Attempts per episode. 2 is the paper's setting; each extra turn repeats the instruction.
        turn_instruction (`str` or `None`, *optional*, defaults to `None`):
            The fixed self-correction instruction shown after each attempt. `None`: the paper's MATH instruction
            (`score_trl.MATH_CORRECTION_INSTRUCTION`); `score_trl.pipeline` fills it with its task's. An empty one is
            refused.
        instruction_template (`str`, *optional*, defaults to `"\n\n{instruction}\n\n"`):
            How the instruction is written between attempts for plain-text (non-conversational) prompts.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Longest turn-1 prompt, in tokens; a longer one is an error. `None` allows any length.

        > Rewards and KL

        alpha (`float`, *optional*, defaults to `10.0`):
            Reward-shaping coefficient (paper: 10). 0 trains every turn on its own reward.
        turn_discount (`float`, *optional*, defaults to `0.0`):
            Discount gamma in [0, 1] across turns: turn k's return is `rhat_k + gamma * G_{k+1}`, with `rhat` the
            stage's per-turn (shaped) reward. 0 is the paper's: each turn trains on its own reward, and the shaping
            bonus only scales turn 2's expected gradient by `1 + alpha`. gamma > 0 also credits turn 1 with turn 2's
            shaped reward, which changes what turn 1 is pushed to: `G_1 = (1 - gamma * alpha) * r1 +
            gamma * (1 + alpha) * r2`, so with `gamma * alpha > 1` a right first attempt lowers turn 1's return.
        turn_weights (`list[float]` or `None`, *optional*, defaults to `None`):
            A non-negative weight per turn on its advantages (a single value applies to every turn); `None`: 1.0 on
            every turn. `[1, 1 + alpha]` with `alpha=0` gives turn 2 the expected gradient of the shaping without
            its variance.
        turn_betas (`list[float]`, *optional*, defaults to `[0.01]`):
            Per-turn weight of the per-token k3 KL to the reference model (paper's Stage II: 0.01 on both turns); a
            single value applies to every turn.
        correct_threshold (`float`, *optional*, defaults to `1.0`):
            A turn counts as correct in the logged accuracy and flip metrics when its summed reward is at least
            this.
        answer_format (`str` or `None`, *optional*, defaults to `None`):
            How the answer-changed logs find and compare final answers: a key of `score_trl.rewards.ANSWER_FORMATS`
            (`"math"`: the final answer, equivalent forms counting as one; `"code"`: whole texts). `None`: `"math"`;
            `score_trl.pipeline` fills it with its task's verifier when that is one of them.
        ref_model_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Hub id or path of the KL reference model. `None`: the weights training starts from. The paper's Stage II
            keeps the KL to the fixed initial (pre-Stage-I) model: `score_trl.pipeline` sets the base model here for
            Stage II. Not supported with PEFT, whose reference is the model with its adapter disabled.
    """

    num_turns: int = field(default=2, metadata={"help": "Attempts per episode (the paper uses 2)."})
    turn_instruction: str | None = field(
        default=None,
        metadata={
            "help": "The fixed self-correction instruction shown after each attempt. None: the paper's MATH "
            "instruction (`score_trl.pipeline` uses its task's instruction)."
        },
    )
    instruction_template: str = field(
        default="\n\n{instruction}\n\n",
        metadata={"help": "Template with an `{instruction}` field, used between attempts for plain-text prompts."},
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Longest turn-1 prompt in tokens; longer prompts are an error."}
    )
    alpha: float = field(default=10.0, metadata={"help": "Reward-shaping coefficient alpha (paper: 10)."})
    turn_discount: float = field(
        default=0.0,
        metadata={
            "help": "Discount gamma in [0, 1] across turns: turn k's return is its (shaped) reward plus gamma times "
            "turn k+1's return. 0: the paper's per-turn returns. gamma > 0 credits turn 1 with turn 2's shaped reward "
            "(turn 1's return: (1 - gamma * alpha) * r1 + gamma * (1 + alpha) * r2)."
        },
    )
    turn_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "Non-negative weight per turn on its advantages (one value: every turn). None: 1.0 on every "
            "turn. [1, 1 + alpha] at alpha 0 gives turn 2 the shaping's expected gradient."
        },
    )
    turn_betas: list[float] = field(
        default_factory=lambda: [0.01],
        metadata={"help": "Per-turn KL weights, one per turn (a single value applies to every turn)."},
    )
    correct_threshold: float = field(
        default=1.0, metadata={"help": "Summed reward at or above which a turn counts as correct in the logs."}
    )
    answer_format: str | None = field(
        default=None,
        metadata={
            "help": "How the answer-changed logs compare attempts, a key of score_trl.rewards.ANSWER_FORMATS: 'math' "
            "(final answers) or 'code' (whole texts). None: 'math' (score_trl.pipeline uses its task's verifier's)."
        },
    )

    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "KL reference model (hub id or path). None: the weights training starts from."},
    )
    # GRPOConfig fields the per-turn leave-one-out advantages replace: defaults changed, other values refused.
    beta: float | None = field(
        default=None,
        metadata={"help": "Derived from `turn_betas` (their maximum): set `turn_betas` instead."},
    )
    scale_rewards: str = field(
        default="none",
        metadata={"help": "Only 'none': the advantages are unscaled leave-one-out differences of per-turn returns."},
    )
    multi_objective_aggregation: str = field(
        default="sum_then_normalize",
        metadata={"help": "Only 'sum_then_normalize': reward functions are summed (with `reward_weights`) first."},
    )

    def __post_init__(self):
        if self.num_turns < 2:
            raise ValueError(f"num_turns={self.num_turns}: self-correction needs at least 2 turns.")
        if self.num_generations is None or self.num_generations < 2:
            raise ValueError(
                f"num_generations={self.num_generations}: the leave-one-out baseline needs at least 2 samples per "
                "prompt. Set num_generations >= 2."
            )
        if self.turn_instruction is not None and not self.turn_instruction.strip():
            raise ValueError(
                f"turn_instruction={self.turn_instruction!r} shows the model nothing between attempts: give the "
                "instruction's text, or leave it unset (None) for the paper's MATH instruction (the pipeline: the "
                "task's)."
            )
        if self.answer_format is not None and self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"answer_format={self.answer_format!r}: use one of {sorted(ANSWER_FORMATS)} (or add yours to "
                "score_trl.rewards.ANSWER_FORMATS), or leave it unset for 'math'."
            )
        if "{instruction}" not in self.instruction_template:
            raise ValueError("instruction_template must contain the field `{instruction}`.")
        if len(self.turn_betas) == 1:
            self.turn_betas = list(self.turn_betas) * self.num_turns
        if len(self.turn_betas) != self.num_turns or any(b < 0 for b in self.turn_betas):
            raise ValueError(
                f"turn_betas={self.turn_betas}: give one non-negative KL weight per turn ({self.num_turns} values)."
            )
        if self.alpha < 0:
            raise ValueError(f"alpha={self.alpha}: the shaping coefficient must be >= 0 (paper: 10).")
        if not 0.0 <= self.turn_discount <= 1.0:
            raise ValueError(
                f"turn_discount={self.turn_discount}: a discount across turns must be in [0, 1] (0: the paper's "
                "per-turn returns; 1: turn 1 also gets turn 2's shaped reward)."
            )
        if self.turn_weights is None:
            self.turn_weights = [1.0] * self.num_turns
        elif len(self.turn_weights) == 1:
            self.turn_weights = list(self.turn_weights) * self.num_turns
        if len(self.turn_weights) != self.num_turns or any(w < 0 for w in self.turn_weights):
            raise ValueError(
                f"turn_weights={self.turn_weights}: give one non-negative advantage weight per turn ({self.num_turns} "
                "values), or leave it unset for 1.0 on every turn."
            )
        if not any(self.turn_weights):
            raise ValueError(
                f"turn_weights={self.turn_weights}: with every weight 0 no turn gets a policy gradient, only the KL "
                "acts. Give at least one turn a positive weight."
            )
        if self.scale_rewards != "none":
            raise ValueError(
                f"scale_rewards={self.scale_rewards!r}: the trainer computes unscaled leave-one-out advantages of "
                "per-turn returns itself, so TRL's reward scaling would have no effect. Leave it at 'none'."
            )
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"multi_objective_aggregation={self.multi_objective_aggregation!r}: the trainer sums the reward "
                "functions (weighted by `reward_weights`) before its own advantages. Leave it at 'sum_then_normalize'."
            )
        # TRL builds the reference model and computes its log-probs only when `beta != 0`: beta is the largest
        # per-turn weight, and the loss applies each turn's own (see `TurnWeightedBeta`).
        derived = float(max(self.turn_betas))
        if self.beta is not None and self.beta != derived:
            raise ValueError(
                f"beta={self.beta} conflicts with turn_betas={self.turn_betas}: the KL weight is set per turn. Set "
                f"`turn_betas` (e.g. [{self.beta}] for every turn) and leave `beta` unset."
            )
        self.beta = derived
        super().__post_init__()

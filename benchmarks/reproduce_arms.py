"""The arms and tasks of benchmarks/reproduce.py: how each method is trained from a base model, then evaluated."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import transformers
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import RLOOConfig, RLOOTrainer, SFTConfig
from variants import VARIANTS, ContinuedRecipe, build_variant

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneTrainer
from score_trl.baselines import run_pair_sft, run_star
from score_trl.embedded import EmbeddedRecipe, split_problems
from score_trl.evaluation import EvalSettings, evaluate
from score_trl.pipeline import eval_settings, parse_args
from score_trl.rewards import math_reward
from score_trl.stages import build_trainer, stage_configs
from score_trl.tasks import get_task


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml"
ARMS = {
    "base": "base (two-turn prompting)",
    "star": "STaR D+",
    "pair_sft": "Pair-SFT",
    "naive": "naive multi-turn RL",
    "score_no_stage1": "SCoRe w/o Stage I",
    "score_no_shaping": "SCoRe w/o shaping",
    "single_turn": "single-turn RL",
    "score": "SCoRe",
    # issue 20's grid: the shaping's expected turn-2 gradient without the shaping, and the bonus carried to turn 1
    "naive_turn_weights": "naive RL, turn weights [1, 1 + alpha]",
    "score_discount": "SCoRe, turn_discount 1",
}
# The paper's arms, which a run without --arms trains; the grid's run with --arms.
FULL_RUN_ARMS = [arm for arm in ARMS if arm not in ("naive_turn_weights", "score_discount")]


@dataclass(frozen=True)
class Testbed:
    """A task of the comparison: the embedded problems with a base model of its own (`recipe`), described."""

    description: str
    recipe: EmbeddedRecipe | ContinuedRecipe

    def base_model(self) -> str:
        return build_variant(self.recipe)


TASKS = {
    "default": Testbed(
        "the demo's base (keeps its first answer 60% of the time whatever its check says, rarely solves in steps "
        'after a "no")',
        VARIANTS["default"],
    ),
    "rival": Testbed(
        "the demo's base continued 600 steps with a capped turn-1 rival (it also solves in steps at turn 1, 20% of "
        "the time, on the half of the problems with a in {1, 9}), so that RL's turn-1 gains transfer",
        VARIANTS["rival"],
    ),
    "copy": Testbed(
        "the copy-prone variant (the default base continued 600 steps on traces that keep a right first answer 90% "
        "and a wrong one 75% of the time; `benchmarks/variants.py`'s `COPY_VARIANT`)",
        VARIANTS["copy"],
    ),
    "copy_rival": Testbed("the copy-prone variant with the capped turn-1 rival", VARIANTS["copy_rival"]),
    "rare": Testbed(
        'the demo\'s base, but after a "no" it solves in steps about 0.6% of the time instead of 6% (`p_solve` '
        "0.015; every other setting as `default`): the rare-correction base of issue 20",
        EmbeddedRecipe(p_solve=0.015),
    ),
    # issue 20's grid of bases between `default` (p_solve 0.15) and below `rare`
    "rare_0.05": Testbed(
        'the demo\'s base, solving in steps after a "no" a third as often (`p_solve` 0.05)',
        EmbeddedRecipe(p_solve=0.05),
    ),
    "rare_0.005": Testbed(
        'the demo\'s base, solving in steps after a "no" a thirtieth as often (`p_solve` 0.005)',
        EmbeddedRecipe(p_solve=0.005),
    ),
}
# The full run's tasks (about 62 minutes on 2 cores); the others run with --tasks.
FULL_RUN_TASKS = ["default", "rival"]


@dataclass(frozen=True)
class ArmSettings:
    """Budgets and coefficients shared by every arm of a run."""

    max_tokens: int = 32  # per turn: the longest second attempt (check, worked solve, answer) and its end token fit
    stage1_steps: int = 150
    stage2_steps: int = 250
    alpha: float = 3.0
    learning_rate: float = 1e-4
    eval_samples_per_problem: int = 16
    logging_steps: int = 10  # the resolution of the training curves
    num_turns: int = 2  # attempts per episode, in training and in evaluation
    feedback: bool = False  # the task's verifier feedback before each later attempt (issue 31); False: intrinsic


def _recipe():
    """(script arguments, trainer config) of the embedded recipe (the demo's), parsed as the demo parses them."""
    script_args, args, _ = parse_args(args=["--config", str(RECIPE)])
    return script_args, args


def _rl_values() -> dict:
    """The trainer arguments of the embedded recipe, so that every RL arm samples and trains as the demo does.
    `beta` and `generation_batch_size` are derived again by each arm's config."""
    _, args = _recipe()
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return {k: v for k, v in values.items() if k not in ("beta", "generation_batch_size")}


def _config(cls, out: str, seed: int, settings: ArmSettings, steps: int, **changes):
    values = {**_rl_values(), "output_dir": out, "seed": seed, "max_steps": steps}
    values.update(learning_rate=settings.learning_rate, save_strategy="no", disable_tqdm=True)
    values.update(logging_steps=settings.logging_steps)
    values.update(max_completion_length=settings.max_tokens)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in {**values, **changes}.items() if k in names})


def _last_turn(log: dict) -> int:
    return max(int(key[4:].split("/")[0]) for key in log if key.startswith("turn") and key.endswith("/reward"))


def _curves(history: list[dict], offset: int) -> dict[str, list[float]]:
    rows = [h for h in history if "self_correction/delta" in h]
    return {
        "step": [h["step"] + offset for h in rows],
        "delta": [h["self_correction/delta"] for h in rows],
        "changed_rate": [h["self_correction/changed_rate"] for h in rows],
        # not logged when a batch has no wrong first answer
        "changed_when_wrong": [h.get("self_correction/changed_when_wrong", math.nan) for h in rows],
        "acc_t1": [h.get("turn1/accuracy", math.nan) for h in rows],
        "acc_last": [h.get(f"turn{_last_turn(h)}/accuracy", math.nan) for h in rows],
    }


def _train(trainer, curves: dict, offset: int = 0) -> str:
    trainer.train()
    trainer.save_model(trainer.args.output_dir)
    for key, values in _curves(trainer.state.log_history, offset).items():
        curves.setdefault(key, []).extend(values)
    return trainer.args.output_dir


STAGE_TRAINERS = {"stage1": StageOneTrainer, "stage2": MultiTurnRLOOTrainer}


def _rl(stage1: bool, shaped: bool, turn_weighted: bool = False, discount: float = 0.0) -> Callable:
    """An RL arm, staged as the demo's pipeline stages it (`score_trl.stages.stage_configs`: Stage I's own KL and
    steps, Stage II's KL reference the base model): Stage I then Stage II, or Stage II alone for the same total
    steps; Stage II's turn-2 reward shaped with `alpha` or not (alpha 0: each turn its own reward, the paper's naive
    multi-turn RL). `turn_weighted`: Stage II's turn-2 advantages weighted `1 + alpha` (`turn_weights`), the
    shaping's expected gradient; `discount`: Stage II's `turn_discount` (Stage I keeps the paper's 0)."""

    def arm(base: str, train: Dataset, out: str, seed: int, s: ArmSettings, curves: dict) -> str:
        script_args, _ = _recipe()
        script_args = dataclasses.replace(
            script_args, stage="both" if stage1 else "2", stage1_max_steps=s.stage1_steps, turn_feedback=s.feedback
        )
        # without Stage I, the same number of RL steps, all in Stage II; its KL reference is the base model either way
        stage2_steps = s.stage2_steps if stage1 else s.stage1_steps + s.stage2_steps
        changes = {"alpha": s.alpha if shaped else 0.0, "ref_model_name_or_path": None if stage1 else base}
        changes.update(turn_weights=[1.0, 1.0 + s.alpha] if turn_weighted else None, turn_discount=discount)
        # one KL weight for every turn (the recipe's, expanded to its two turns, would not fit another number)
        changes.update(num_turns=s.num_turns, turn_betas=[0.01])
        args = _config(MultiTurnRLOOConfig, out if stage1 else f"{out}/stage2", seed, s, stage2_steps, **changes)
        model, offset, task = base, 0, get_task(script_args.task)
        for name, make_config in stage_configs(script_args, args, task, base).items():
            feedback = task.feedback_for(s.feedback)
            trainer = build_trainer(
                STAGE_TRAINERS[name], model, make_config(), train, task.reward, feedback_func=feedback
            )
            model = _train(trainer, curves, offset)
            offset += trainer.args.max_steps
        return model

    return arm


def _single_turn(base: str, train: Dataset, out: str, seed: int, s: ArmSettings, curves: dict) -> str:
    """TRL's own RLOOTrainer on turn 1 alone, with the RL arms' budget and KL weight."""
    args = _config(RLOOConfig, out, seed, s, s.stage1_steps + s.stage2_steps, beta=0.01)
    return _train(RLOOTrainer(base, math_reward, args=args, train_dataset=train), curves)


def _sft_args(out: str, seed: int, s: ArmSettings) -> SFTConfig:
    return SFTConfig(
        output_dir=out, num_train_epochs=1, learning_rate=s.learning_rate, per_device_train_batch_size=64,
        use_cpu=True, bf16=False, save_strategy="no", report_to="none", seed=seed, disable_tqdm=True,
        logging_steps=10,
    )  # fmt: skip


def _sampling_budget(s: ArmSettings) -> int:
    """Two-turn traces an RL arm samples: (Stage I + Stage II steps) x batch. The SFT arms sample as many."""
    values = _rl_values()
    return (s.stage1_steps + s.stage2_steps) * values["per_device_train_batch_size"]


def _star(base: str, train: Dataset, out: str, seed: int, s: ArmSettings, curves: dict) -> str:
    iterations = 3
    per_problem = max(1, _sampling_budget(s) // (iterations * len(train)))
    rows, settings = train.to_list(), sampling_settings(s)
    return run_star(base, rows, _sft_args(out, seed, s), settings, "math", iterations, per_problem, keep_correct=True)


def _pair_sft(base: str, train: Dataset, out: str, seed: int, s: ArmSettings, curves: dict) -> str:
    per_problem = max(1, _sampling_budget(s) // len(train))
    return run_pair_sft(base, train.to_list(), _sft_args(out, seed, s), sampling_settings(s), "math", per_problem)


def sampling_settings(s: ArmSettings) -> EvalSettings:
    """How every arm samples (training data for the SFT arms, the held-out evaluation): as the demo evaluates."""
    script_args, args = _recipe()
    settings = eval_settings(dataclasses.replace(script_args, turn_feedback=s.feedback), args)
    return dataclasses.replace(settings, max_new_tokens=s.max_tokens, num_turns=s.num_turns)


TRAIN: dict[str, Callable] = {
    "star": _star,
    "pair_sft": _pair_sft,
    "naive": _rl(stage1=False, shaped=False),
    "score_no_stage1": _rl(stage1=False, shaped=True),
    "score_no_shaping": _rl(stage1=True, shaped=False),
    "single_turn": _single_turn,
    "score": _rl(stage1=True, shaped=True),
    "naive_turn_weights": _rl(stage1=False, shaped=False, turn_weighted=True),
    "score_discount": _rl(stage1=True, shaped=True, discount=1.0),
}


def run_arm(task: str, arm: str, seed: int, s: ArmSettings, out: str) -> dict:
    """Train `arm` from `task`'s base model with `seed`, evaluate it on the held-out problems; metrics and curves."""
    transformers.logging.set_verbosity_error()
    logging.getLogger().setLevel(logging.ERROR)
    os.makedirs(out, exist_ok=True)
    base = TASKS[task].base_model()
    train_rows, held_out = split_problems()
    train = Dataset.from_list(train_rows)
    curves: dict = {}
    set_seed(seed)
    model_path = base if arm == "base" else TRAIN[arm](base, train, out, seed, s, curves)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    set_seed(10_000 + seed)  # the same evaluation samples for every arm of a seed
    rows = [row for row in held_out for _ in range(s.eval_samples_per_problem)]
    settings = sampling_settings(s)
    metrics, _ = evaluate(model, tokenizer, rows, "math", settings, traces_path=f"{out}/eval_traces.jsonl")
    return {"metrics": metrics, "curves": curves, "settings": dataclasses.asdict(s)}

"""SCoRe's two stages in a run: which run, what differs between them, and each stage's config, trainer and training.

A run parses one trainer config, a `MultiTurnRLOOConfig`: what both stages share (batch, learning rate, generation,
logging, ...), and Stage II's returns (`alpha`, `turn_discount`, `turn_weights`). What differs between the stages has
a field per stage here, in `StageArguments`: the steps (`stage1_max_steps`), the KL weights (`stage1_turn_betas`,
`stage2_turn_betas`) and Stage II's KL reference (`stage2_reference`). `stage_configs` derives each stage's config
from the two, and fills what the user left unset from the task; nothing the user set is replaced without a log line
or an error that says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from accelerate.utils import is_peft_model
from transformers import BitsAndBytesConfig
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, get_quantization_config

from .loading import resolve_model_path, whole_models
from .tasks import Task
from .trainers import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig


if TYPE_CHECKING:
    from datasets import Dataset
    from peft import PeftConfig


__all__ = [
    "StageArguments",
    "build_trainer",
    "derive_config",
    "finished_stage",
    "model_init_kwargs",
    "quantization_config",
    "stage_configs",
    "train_stage",
]

logger = logging.getLogger(__name__)

STAGES = ("1", "2", "both")


def _field_default(cls, name: str):
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _or_default(turn_betas: list[float] | None, config_cls) -> list[float]:
    """A stage's KL weights: the ones set for it, else its config class's default."""
    return list(_field_default(config_cls, "turn_betas") if turn_betas is None else turn_betas)


# Stage II's return settings, which Stage I does not take: it trains on the paper's returns (StageOneConfig's).
STAGE_TWO_RETURNS = ("alpha", "turn_discount", "turn_weights")


@dataclass
class StageArguments:
    """Which stages a run trains and what differs between them; the trainer config holds what they share.

    `stage1_*` fields act only where Stage I runs ('1', 'both') and `stage2_*` ones where Stage II runs ('2',
    'both'); a run logs those it leaves unused. The trainer config's own `turn_betas` is refused in a run: it would
    say one stage's KL and be read as the other's.
    """

    stage: str = field(default="both", metadata={"help": "'1' (Stage I alone), '2' (Stage II alone) or 'both'."})
    stage1_max_steps: int | None = field(
        default=None, metadata={"help": "Training steps of Stage I (None: `max_steps`, as Stage II)."}
    )
    stage1_turn_betas: list[float] | None = field(
        default=None,
        metadata={
            "help": "Per-turn KL weights of Stage I (None: StageOneConfig's, [0.1, 0.01]: strong on turn 1, 0.01 on "
            "every later turn; the paper's MBPP setting is [0.25, 0.01])."
        },
    )
    stage2_turn_betas: list[float] | None = field(
        default=None,
        metadata={"help": "Per-turn KL weights of Stage II (None: MultiTurnRLOOConfig's, 0.01 on every turn)."},
    )
    stage2_reference: str = field(
        default="base",
        metadata={
            "help": "KL reference of Stage II when stage='both' and ref_model_name_or_path is unset: 'base' (the "
            "model before Stage I, as in the paper) or 'stage1' (the Stage I model it starts from). With LoRA only "
            "'stage1' is possible."
        },
    )

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r}: use '1', '2' or 'both'.")
        if self.stage2_reference not in ("base", "stage1"):
            raise ValueError(f"stage2_reference={self.stage2_reference!r}: use 'base' or 'stage1'.")


def derive_config(config_cls, args: MultiTurnRLOOConfig, **changes) -> MultiTurnRLOOConfig:
    """A config of `config_cls` with `args`'s values and `changes`. `generation_batch_size` and `beta` are left to be
    derived again (from `steps_per_generation` and `turn_betas`): the configs refuse a conflicting value."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return config_cls(**{**values, "generation_batch_size": None, "beta": None, **changes})


def _check_stage_settings(stages: StageArguments, args: MultiTurnRLOOConfig) -> None:
    """Refuse the settings that would mean something else than they say; log those the run leaves unused."""
    if type(args) is not MultiTurnRLOOConfig:
        raise TypeError(
            f"args is a {type(args).__name__}: a run derives each stage's config from one MultiTurnRLOOConfig, "
            "what both stages share (stage1_turn_betas sets Stage I's KL)."
        )
    default = _field_default(MultiTurnRLOOConfig, "turn_betas")  # one value, for every turn
    if list(args.turn_betas) not in (default, default * args.num_turns):
        raise ValueError(
            f"turn_betas={args.turn_betas}: a run sets each stage's KL weights apart, so this would say one stage's "
            "and be read as the other's. Set stage1_turn_betas (Stage I's) or stage2_turn_betas (Stage II's) instead."
        )
    returns = {name: getattr(args, name) for name in STAGE_TWO_RETURNS}
    defaults = {"alpha": _field_default(MultiTurnRLOOConfig, "alpha"), "turn_discount": 0.0}
    defaults["turn_weights"] = [1.0] * args.num_turns
    changed = {name: value for name, value in returns.items() if value != defaults[name]}
    if stages.stage == "1" and changed:
        logger.info("%s: Stage II's returns, unused by stage '1' (Stage I trains on r2 alone).", changed)
    changed.pop("alpha", None)  # shaping, which Stage I has none of
    if stages.stage == "both" and changed:
        logger.info("%s: Stage II's; Stage I trains on the paper's returns (no discount, weight 1).", changed)
    unused = {name: getattr(stages, name) for name in ("stage1_max_steps", "stage1_turn_betas")}
    unused = {name: value for name, value in unused.items() if value is not None}
    if stages.stage == "2" and unused:
        logger.info("%s unused: stage '2' runs no Stage I.", unused)
    if stages.stage == "1" and stages.stage2_turn_betas is not None:
        logger.info("stage2_turn_betas=%s unused: stage '1' runs no Stage II.", stages.stage2_turn_betas)


def stage_configs(
    stages: StageArguments,
    args: MultiTurnRLOOConfig,
    task: Task,
    base_path: str,
    peft: bool = False,
    **changes,
) -> dict[str, Callable[[], MultiTurnRLOOConfig]]:
    """The config of each stage `stages.stage` runs, by name ('stage1', 'stage2'), in order, derived from `args`
    with `changes` (given to both; a stage's own settings below win): Stage I a `StageOneConfig` with its KL, steps
    and the paper's returns; Stage II a `MultiTurnRLOOConfig` with its KL and its KL reference (the base model at
    `base_path`, with stage 'both'). Each takes the task's instruction and answer format where `args` leaves them
    unset, and a GGUF reference's converted checkpoint. With both stages, each writes into its own directory under
    `args.output_dir`, and only Stage II pushes to the Hub. `args` itself is never changed.

    Each config is built when asked for, just before its trainer: building a config resets accelerate's state, and
    under DeepSpeed a second Accelerator may not be handed a plugin of its own. So the values are functions.
    """
    _check_stage_settings(stages, args)
    both = stages.stage == "both"
    # a named verifier's answer format; a task whose verifier is a function leaves the config's (math's by default)
    answer_format = args.answer_format
    if answer_format is None and isinstance(task.verifier, str):
        answer_format = task.verifier
    shared = {"turn_instruction": task.turn_instruction(args.turn_instruction), "answer_format": answer_format}
    shared.update(changes)

    def reference() -> str | None:
        with whole_models(args):  # a GGUF file or packaged model: its checkpoint, converted whole
            return resolve_model_path(args.ref_model_name_or_path)

    def stage_one() -> StageOneConfig:
        own = {name: _field_default(StageOneConfig, name) for name in STAGE_TWO_RETURNS}
        own["turn_betas"] = stages.stage1_turn_betas  # None: StageOneConfig's, for any number of turns
        if stages.stage1_max_steps is not None:
            own["max_steps"] = stages.stage1_max_steps
        if both:
            own.update(output_dir=os.path.join(args.output_dir, "stage1"), push_to_hub=False)
        return derive_config(StageOneConfig, args, **{**shared, **own, "ref_model_name_or_path": reference()})

    def stage_two() -> MultiTurnRLOOConfig:
        own = {"turn_betas": _or_default(stages.stage2_turn_betas, MultiTurnRLOOConfig)}
        own["ref_model_name_or_path"] = reference()
        if both:
            own["output_dir"] = os.path.join(args.output_dir, "stage2")
            if own["ref_model_name_or_path"] is None and stages.stage2_reference == "base":
                if peft:
                    logger.warning("With LoRA, Stage II's KL reference is the Stage I model (its adapter disabled).")
                else:
                    own["ref_model_name_or_path"] = base_path
        elif own["ref_model_name_or_path"] is None and not peft:
            logger.warning(
                "Stage II alone with no ref_model_name_or_path: the KL reference is the model it starts from. The "
                "paper keeps the KL to the base model: set ref_model_name_or_path to it."
            )
        return derive_config(MultiTurnRLOOConfig, args, **{**shared, **own})

    configs = {}
    if stages.stage in ("1", "both"):
        configs["stage1"] = stage_one
    if stages.stage in ("2", "both"):
        configs["stage2"] = stage_two
    return configs


def _model_arg_default(name: str):
    return _field_default(ModelConfig, name)


def model_init_kwargs(args: MultiTurnRLOOConfig, model_args: ModelConfig) -> dict:
    """`args.model_init_kwargs` with what `model_args` sets added: merged, never replaced. A value both set
    differently is an error, not a silent choice."""
    from_model_args = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype if model_args.dtype not in (None, "auto") else None,
    }
    names = {"revision": "model_revision", "attn_implementation": "attn_implementation", "dtype": "dtype"}
    user = dict(args.model_init_kwargs or {})
    merged = dict(user)
    for key, value in from_model_args.items():
        if value is None:
            continue
        set_by_user = value != _model_arg_default(names[key])
        if key in user and user[key] != value and set_by_user:
            raise ValueError(
                f"model_init_kwargs[{key!r}]={user[key]!r} conflicts with {names[key]}={value!r}: set one of them."
            )
        merged.setdefault(key, value)
    return merged


def quantization_config(model_args: ModelConfig, peft_config: PeftConfig | None) -> BitsAndBytesConfig | None:
    """`load_in_4bit` / `load_in_8bit` as TRL's scripts read them (`get_quantization_config`), refused where they
    cannot run: bitsandbytes' kernels need a CUDA GPU, and quantized weights train only through LoRA adapters."""
    config = get_quantization_config(model_args)
    if config is None:
        return None
    flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
    if peft_config is None:
        raise ValueError(f"{flag}=True trains through LoRA adapters only: set use_peft=True (QLoRA) or unset {flag}.")
    if not torch.cuda.is_available():
        raise ValueError(
            f"{flag}=True needs a CUDA GPU (bitsandbytes' quantized weights), and none is visible: unset {flag} "
            "to train in full precision here, or run on a GPU with `pip install 'score-trl[qlora]'`."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{flag}=True needs bitsandbytes: pip install 'score-trl[qlora]'.")
    return config


def build_trainer(
    trainer_cls: type[MultiTurnRLOOTrainer],
    model_path: str,
    args: MultiTurnRLOOConfig,
    train_dataset: Dataset,
    reward: Callable,
    peft_config: PeftConfig | None = None,
    quantization_config: BitsAndBytesConfig | None = None,
    feedback_func: Callable | None = None,
) -> MultiTurnRLOOTrainer:
    """A trainer of `trainer_cls` for a stage: the model at `model_path`, the task's `reward` (and its
    `feedback_func` in a run with feedback turns), the stage's `args`."""
    # Passed only when set: a trainer class written before quantization or feedback existed keeps working without it.
    kwargs = {"quantization_config": quantization_config} if quantization_config is not None else {}
    if feedback_func is not None:
        kwargs["feedback_func"] = feedback_func
    return trainer_cls(model_path, reward, args=args, train_dataset=train_dataset, peft_config=peft_config, **kwargs)


def finished_stage(output_dir: str) -> str | None:
    """The model a finished stage in `output_dir` handed on (its merged model with LoRA), or None when the stage has
    not finished there. `train_results.json` is written last, once the model is saved."""
    if not os.path.exists(os.path.join(output_dir, "train_results.json")):
        return None
    merged = os.path.join(output_dir, "merged")
    return merged if os.path.isdir(merged) else output_dir


def train_stage(trainer: MultiTurnRLOOTrainer) -> str:
    """Train (resuming from the last checkpoint in `args.output_dir`), save the model and its model card; returns
    the path the next stage and the evaluation load. A LoRA model is merged for them. The training metrics are
    written last: they mark the stage finished (`finished_stage`)."""
    args = trainer.args
    last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    if last is not None:
        logger.info("Resuming %s from %s", type(trainer).__name__, last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_state()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(dataset_name=None, tags=["score-trl"])
    trainer.accelerator.wait_for_everyone()  # the next stage and the evaluation load what the main process wrote
    path = args.output_dir
    if is_peft_model(trainer.model):
        # LoRA: the next stage and the evaluation start from the merged model (not under ZeRO-3, where it is sharded)
        path = os.path.join(args.output_dir, "merged")
        if trainer.accelerator.is_main_process:
            # merged in float32: adding the adapter's small update to bfloat16 weights would round much of it away
            model = trainer.accelerator.unwrap_model(trainer.model).float()
            model.merge_and_unload().save_pretrained(path)
            trainer.processing_class.save_pretrained(path)
        trainer.accelerator.wait_for_everyone()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    return path

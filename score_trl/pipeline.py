"""The SCoRe pipeline: evaluate the base model, train Stage I then Stage II, evaluate again, write the before/after
table and the model card, push. `examples/score_math.py` and `examples/score_code.py` are thin scripts around `run`.

One `ScoreScriptArguments` (data, evaluation, stages), a trainer config and TRL's `ModelConfig`, parsed with
`TrlParser`. The stage decides the config class before parsing: `--stage 1` parses a `StageOneConfig` (its defaults,
turn-1 KL 0.1 / turn-2 KL 0.01), `--stage 2` and `--stage both` a `MultiTurnRLOOConfig` (Stage II's; with `both`,
Stage I takes it with the `stage1_*` changes and StageOneConfig's KL):

    accelerate launch examples/score_math.py --config recipes/embedded/score/config_math.yaml --stage 1
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, is_peft_model
from transformers import AutoConfig, BitsAndBytesConfig
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, get_peft_config, get_quantization_config

from .data.embedded_model import EmbeddedRecipe, build_base_model
from .evaluation import EvalSettings, evaluate_checkpoint
from .loading import load_model_and_tokenizer, resolve_model_path, whole_models
from .metrics import format_table
from .rewards import ANSWER_FORMATS
from .run_record import RunRecord, check_same_run, run_fingerprint
from .tasks import Task, TaskArguments, get_task, parse_with_recipe
from .trainers import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer


__all__ = [
    "ScoreScriptArguments",
    "build_trainer",
    "config_class",
    "derive_config",
    "each_warning_once",
    "eval_settings",
    "parse_args",
    "quantization_config",
    "run",
    "finished_stage",
    "stage_configs",
    "train_stage",
]

logger = logging.getLogger(__name__)

STAGES = ("1", "2", "both")


@dataclass
class ScoreScriptArguments(TaskArguments):
    """Task, data, evaluation and stage settings of a SCoRe run (see `TaskArguments` for the task and data)."""

    eval_do_sample: bool = field(default=False, metadata={"help": "Sample in evaluation (default: greedy)."})
    eval_use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Evaluate with vLLM (`make install-vllm`; docs/vllm.md): the same greedy answers as transformers."
        },
    )
    eval_samples_per_problem: int = field(
        default=1, metadata={"help": "Sampled two-turn traces per problem (with eval_do_sample)."}
    )
    stage: str = field(
        default="both",
        metadata={
            "help": "'1' (Stage I; parses a StageOneConfig), '2' (Stage II) or 'both'. Decided before the trainer "
            "arguments are parsed: give it on the command line or in the recipe."
        },
    )
    stage1_max_steps: int | None = field(
        default=None,
        metadata={"help": "Training steps of Stage I, with stage '1' or 'both' (None: `max_steps`); unused by '2'."},
    )
    stage1_turn_betas: list[float] | None = field(
        default=None,
        metadata={
            "help": "Per-turn KL weights of Stage I, with stage '1' or 'both' (None: StageOneConfig's, [0.1, 0.01]); "
            "unused by '2'."
        },
    )
    stage2_reference: str = field(
        default="base",
        metadata={
            "help": "KL reference of Stage II when stage='both': 'base' (the model before Stage I, as in the paper) "
            "or 'stage1' (the Stage I model it starts from). With LoRA only 'stage1' is possible."
        },
    )
    smoke: bool = field(
        default=False,
        metadata={
            "help": "A one-minute run: 3 steps per stage, 16 evaluation problems once each, no checkpoints, a small "
            "embedded base (it sets max_steps, stage1_max_steps, max_eval_samples, eval_samples_per_problem and "
            "save_strategy, whatever else set them)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r}: use '1', '2' or 'both'.")
        if self.stage2_reference not in ("base", "stage1"):
            raise ValueError(f"stage2_reference={self.stage2_reference!r}: use 'base' or 'stage1'.")


def _stage_named(argv: Sequence[str]) -> str:
    """The stage `argv` names (`--stage X`, `--stage=X`), else its `--config` recipe's, else 'both'; as TrlParser
    reads them, the command line over the recipe."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--stage" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--stage="):
            return arg.split("=", 1)[1]
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        recipe = yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()) or {}
        return str(recipe.get("stage", "both"))
    return "both"


def config_class(stage: str) -> type[MultiTurnRLOOConfig]:
    """The trainer config a run of `stage` parses: Stage I's alone, else Stage II's (from which Stage I is derived)."""
    return StageOneConfig if stage == "1" else MultiTurnRLOOConfig


def parse_args(default_recipe: Path | None = None, args: list[str] | None = None):
    """(script arguments, trainer config, model config) from the command line, read from `default_recipe` when no
    `--config` is given. The stage picks the config class first (`config_class`), so that `--stage 1` gets Stage I's
    defaults; the task's defaults (its instruction) fill what the user left unset."""
    argv = sys.argv[1:] if args is None else list(args)
    if default_recipe is not None and "--config" not in argv:
        argv = ["--config", str(default_recipe), *argv]
    types = (ScoreScriptArguments, config_class(_stage_named(argv)), ModelConfig)
    script_args, training_args, model_args = parse_with_recipe(types, None, argv)
    _apply_task_defaults(script_args, training_args)
    return script_args, training_args, model_args


def _apply_task_defaults(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig) -> None:
    """Fill what the user left unset with the task's defaults, never replacing what was set."""
    args.turn_instruction = get_task(script_args.task).turn_instruction(args.turn_instruction)


def _field_default(cls, name: str):
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _model_init_kwargs(args: MultiTurnRLOOConfig, model_args: ModelConfig) -> dict:
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
        set_by_user = value != _field_default(ModelConfig, names[key])
        if key in user and user[key] != value and set_by_user:
            raise ValueError(
                f"model_init_kwargs[{key!r}]={user[key]!r} conflicts with {names[key]}={value!r}: set one of them."
            )
        merged.setdefault(key, value)
    return merged


def derive_config(config_cls, args: MultiTurnRLOOConfig, **changes) -> MultiTurnRLOOConfig:
    """A config of `config_cls` with `args`'s values and `changes`. `generation_batch_size` and `beta` are left to be
    derived again (from `steps_per_generation` and `turn_betas`): the configs refuse a conflicting value."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return config_cls(**{**values, "generation_batch_size": None, "beta": None, **changes})


def _stage1_config(script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig) -> StageOneConfig:
    changes = {}
    if script_args.stage1_max_steps is not None:
        changes["max_steps"] = script_args.stage1_max_steps
    if script_args.stage == "1":
        if not isinstance(args, StageOneConfig):
            raise TypeError(
                f"stage='1' trains with a StageOneConfig (turn-1 KL above turn-2 KL), got {type(args).__name__}: "
                "parse with `score_trl.pipeline.parse_args`, or pass a StageOneConfig."
            )
        betas = script_args.stage1_turn_betas
        if betas is not None:
            if list(args.turn_betas) not in (list(betas), _field_default(StageOneConfig, "turn_betas")):
                raise ValueError(
                    f"stage1_turn_betas={betas} and turn_betas={args.turn_betas} both set Stage I's KL with stage="
                    "'1': set one of them."
                )
            changes["turn_betas"] = list(betas)
        return derive_config(StageOneConfig, args, **changes) if changes else args
    changes.update(output_dir=os.path.join(args.output_dir, "stage1"), push_to_hub=False)
    # Stage I's own KL weights, not Stage II's carried over: the script's, else StageOneConfig's default.
    changes["turn_betas"] = list(script_args.stage1_turn_betas or _field_default(StageOneConfig, "turn_betas"))
    # The recipe's turn_discount and turn_weights are Stage II's experiments: Stage I keeps the paper's returns (a
    # Stage II turn-1 weight would even be refused there, where turn 1 has no reward term).
    changes.update(turn_discount=0.0, turn_weights=None)
    return derive_config(StageOneConfig, args, **changes)


def _stage2_config(
    script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, base_path: str, peft: bool
) -> MultiTurnRLOOConfig:
    if script_args.stage != "both":
        if args.ref_model_name_or_path is None and not peft:
            logger.warning(
                "Stage II alone with no ref_model_name_or_path: the KL reference is the model it starts from. The "
                "paper keeps the KL to the base model: set ref_model_name_or_path to it."
            )
        return args
    reference = args.ref_model_name_or_path
    if reference is None and script_args.stage2_reference == "base":
        if peft:
            logger.warning("With LoRA, Stage II's KL reference is the Stage I model (its adapter disabled).")
        else:
            reference = base_path
    stage2_dir = os.path.join(args.output_dir, "stage2")
    return derive_config(MultiTurnRLOOConfig, args, output_dir=stage2_dir, ref_model_name_or_path=reference)


def stage_configs(
    script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, base_path: str, peft: bool = False
) -> dict[str, MultiTurnRLOOConfig]:
    """The config of each stage `script_args.stage` runs, by name ('stage1', 'stage2'), in order: Stage I's with its
    own KL and steps, Stage II's with its KL reference (the base model at `base_path`, with stage 'both').

    Each config is built when asked for, just before its trainer: building a config resets accelerate's state, and
    under DeepSpeed a second Accelerator may not be handed a plugin of its own. So the values are functions.
    """
    stages = {}
    if script_args.stage in ("1", "both"):
        stages["stage1"] = lambda: _stage1_config(script_args, args)
    if script_args.stage in ("2", "both"):
        stages["stage2"] = lambda: _stage2_config(script_args, args, base_path, peft)
    return stages


def eval_settings(
    script_args: ScoreScriptArguments, source: MultiTurnRLOOTrainer | MultiTurnRLOOConfig
) -> EvalSettings:
    """How the pipeline evaluates: with the script's decoding, rendering turns as `source` does. A trainer gives its
    `get_turn_instruction` (per row, a subclass's override included); a config, where there is no trainer (a
    benchmark's base model, the SFT arms), its `turn_instruction` as `parse_args` resolved it."""
    decoding = {
        "max_new_tokens": script_args.eval_max_new_tokens,
        "batch_size": script_args.eval_batch_size,
        "do_sample": script_args.eval_do_sample,
        "use_vllm": script_args.eval_use_vllm,
    }
    if isinstance(source, MultiTurnRLOOConfig):
        return EvalSettings.from_config(source, source.turn_instruction, **decoding)
    return EvalSettings.from_trainer(source, **decoding)


def evaluate_model(
    model_path: str,
    held_out: list[dict],
    script_args: ScoreScriptArguments,
    trainer: MultiTurnRLOOTrainer,
    output_dir: str,
    name: str,
) -> dict[str, float]:
    """The paper's metrics for the model at `model_path` on `held_out`, rendered as `trainer` renders turns."""
    held_out = [row for row in held_out for _ in range(script_args.eval_samples_per_problem)]
    metrics, _ = evaluate_checkpoint(
        model_path,
        held_out,
        get_task(script_args.task).verifier,
        eval_settings(script_args, trainer),
        load_args=trainer.args,
        seed=trainer.args.seed,
        traces_path=str(Path(output_dir) / f"eval_{name}_traces.jsonl"),
        metrics_path=str(Path(output_dir) / f"eval_{name}.json"),
    )
    return metrics


def _check_loadable(model_path: str) -> None:
    """Stop with one line that says why when the model cannot be loaded, before a trainer fails on it with a
    traceback about repo ids. Its config is the cheap check; only where that fails is the model loaded, by the
    loader whose errors are one line (`ModelLoadError`), which also loads forms a config alone does not name."""
    try:
        AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        load_model_and_tokenizer(model_path)


def build_trainer(
    trainer_cls, model_path: str, args, train_dataset, task: Task, peft_config=None, quantization_config=None
):
    """A trainer of `trainer_cls` for `task`: its reward, and a named verifier's answer format for the answer-changed
    logs (a task with its own verifier function keeps the trainer's)."""
    # Passed only when set: a trainer class written before quantization existed keeps working without it.
    kwargs = {"quantization_config": quantization_config} if quantization_config is not None else {}
    trainer = trainer_cls(
        model_path, task.reward, args=args, train_dataset=train_dataset, peft_config=peft_config, **kwargs
    )
    if isinstance(task.verifier, str):
        trainer.answer_format = ANSWER_FORMATS[task.verifier]
    return trainer


def finished_stage(output_dir: str) -> str | None:
    """The model a finished stage in `output_dir` handed on (its merged model with LoRA), or None when the stage has
    not finished there. `train_results.json` is written last, once the model is saved."""
    if not os.path.exists(os.path.join(output_dir, "train_results.json")):
        return None
    merged = os.path.join(output_dir, "merged")
    return merged if os.path.isdir(merged) else output_dir


def quantization_config(model_args: ModelConfig, peft_config) -> BitsAndBytesConfig | None:
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


def train_stage(trainer) -> str:
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


@contextlib.contextmanager
def each_warning_once() -> Iterator[None]:
    """Inside, each distinct warning (category and message) is shown at most once; which warnings are shown is left
    to the filters as they are.

    Python shows a warning once per place it is raised from, but forgets what it has shown whenever the filters
    change, which every `warnings.catch_warnings()` exit does: TRL enters one while generating, so its
    `is_gradient_checkpointing is deprecated` FutureWarning was printed at every generation of the demo.
    """
    shown: set[tuple[type, str]] = set()
    show = warnings.showwarning

    def show_once(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in shown:
            shown.add((category, str(message)))
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_once
    try:
        yield
    finally:
        warnings.showwarning = show


RESULT_NAMES = {"stage1": ("stage I", "stage1"), "stage2": ("SCoRe", "final")}  # (table row, eval file name)


def run(
    script_args: ScoreScriptArguments,
    args: MultiTurnRLOOConfig,
    model_args: ModelConfig,
    trainer_classes: tuple[type, type] | None = None,
) -> dict[str, dict]:
    """The whole pipeline; returns the evaluation results by name ('base', 'stage I', 'SCoRe').

    `trainer_classes` are Stage I's and Stage II's trainers: pass subclasses to change what they do (None: the task's
    `trainers`, else `StageOneTrainer` and `MultiTurnRLOOTrainer`). Every evaluation
    renders turns as the stage's trainer does (its `get_turn_instruction`, per row), the base model's as the first
    stage's trainer does. What the user set in `args` is kept: task defaults and `model_args` only fill what is unset.
    Each distinct warning is shown once (`each_warning_once`).
    """
    with each_warning_once():
        return _run(script_args, args, model_args, trainer_classes)


def _run(
    script_args: ScoreScriptArguments,
    args: MultiTurnRLOOConfig,
    model_args: ModelConfig,
    trainer_classes: tuple[type, type] | None,
) -> dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if script_args.torch_threads:
        torch.set_num_threads(script_args.torch_threads)
    state = PartialState()
    task = get_task(script_args.task)
    logger.info("task %s, process %d of %d (%s)", task.name, state.process_index, state.num_processes, state.device)
    _apply_task_defaults(script_args, args)
    if script_args.stage == "2" and (script_args.stage1_max_steps, script_args.stage1_turn_betas) != (None, None):
        logger.info("stage1_max_steps / stage1_turn_betas unused: stage '2' runs no Stage I.")
    if script_args.smoke:
        args.max_steps = 3
        script_args.stage1_max_steps = 3 if script_args.stage != "2" else None
        script_args.max_eval_samples, script_args.eval_samples_per_problem = 16, 1
        args.save_strategy = "no"
    train_dataset, held_out = script_args.load_data()

    args.model_init_kwargs = _model_init_kwargs(args, model_args)
    peft_config = get_peft_config(model_args)
    quantization = quantization_config(model_args, peft_config)
    with whole_models(args):  # a GGUF file or packaged model: its checkpoint, converted whole (also under ZeRO-3)
        model_path = resolve_model_path(model_args.model_name_or_path)
    if task.offline_model and model_path in (None, "embedded"):
        recipe = EmbeddedRecipe(pretrain_steps=150) if script_args.smoke else EmbeddedRecipe()
        with state.main_process_first(), whole_models(args):
            model_path = build_base_model(recipe)
    if model_path is None:
        raise ValueError("model_name_or_path is not set: name the model to train (a hub id or a path).")
    _check_loadable(model_path)

    # A run resumes what its output_dir holds (checkpoints, finished stages, evaluations) if its settings are the same.
    fingerprint = run_fingerprint(script_args, args, model_args)
    resuming = [check_same_run(args.output_dir, fingerprint) if state.is_main_process else None]
    broadcast_object_list(resuming)  # every process skips (or runs) the same stages and evaluations
    record = RunRecord(os.path.join(args.output_dir, "run_metrics.json"), fingerprint, resume=resuming[0])

    def evaluation(path: str, trainer, name: str, row: str) -> dict[str, float]:
        if row in record.evaluations:  # evaluated in an earlier session of this run
            return record.evaluations[row]
        started = time.perf_counter()
        metrics = evaluate_model(path, held_out, script_args, trainer, args.output_dir, name)
        if state.is_main_process:
            record.add_evaluation(row, metrics)
            record.add_wall_time(f"eval {row}", time.perf_counter() - started)
        return metrics

    base_path, results, trainer = model_path, {}, None
    trainer_classes = trainer_classes or task.trainers or (StageOneTrainer, MultiTurnRLOOTrainer)
    classes = dict(zip(("stage1", "stage2"), trainer_classes, strict=True))
    for name, make_config in stage_configs(script_args, args, base_path, peft_config is not None).items():
        trainer = None  # the previous stage's model, optimizer and reference go before this stage's are built
        gc.collect()
        trainer = build_trainer(
            classes[name], model_path, make_config(), train_dataset, task, peft_config, quantization
        )
        logger.info("%s trains with %s", name, type(trainer).__name__)
        trainer.add_callback(record.for_stage(name))
        if not results:  # the base model, evaluated as the first stage's trainer renders turns
            results["base"] = evaluation(base_path, trainer, "base", "base")
        finished = finished_stage(trainer.args.output_dir)
        if finished is not None:
            logger.info("%s finished in an earlier session: %s", name, finished)
            model_path = finished
        else:
            started = time.perf_counter()
            model_path = train_stage(trainer)
            if state.is_main_process:
                record.add_wall_time(name, time.perf_counter() - started)
        row, file_name = RESULT_NAMES[name]
        results[row] = evaluation(model_path, trainer, file_name, row)

    if state.is_main_process:
        table = format_table(results)
        decoding = f"sampled x{script_args.eval_samples_per_problem}" if script_args.eval_do_sample else "greedy"
        note = "delta_se: delta's standard error over problems"
        print(f"\nSelf-correction on held-out problems ({decoding}, two turns; {note}):\n{table}")
        Path(args.output_dir, "results.md").write_text(table + "\n")
        Path(args.output_dir, "results.json").write_text(json.dumps(results, indent=2))
        logger.info("Final model: %s", model_path)
    if args.push_to_hub:  # Stage I alone pushes its model too; with both stages, only the final one is pushed
        trainer.model_card_metrics = results
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return results

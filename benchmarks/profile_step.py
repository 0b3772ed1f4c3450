"""Where a Stage II step's time goes: turn-1 and turn-2 generation, rewards, the reference forward, the policy's
forward and backward, and the rest (optimizer, logging), measured inside one process on any recipe.

    python benchmarks/profile_step.py --config recipes/SmolLM2-135M-Instruct/score/config_arithmetic.yaml
    python benchmarks/profile_step.py --config recipes/SmolLM2-135M-Instruct/score/config_arithmetic.yaml \\
        --bf16 true --use_peft true --lora_r 16 --learning_rate 1e-4   # any recipe field can be changed

The recipe's trainer (`MultiTurnRLOOTrainer`, Stage II) runs `--warmup` untimed steps, then `--steps` timed ones;
each part is timed around the trainer method that does it, and the table prints seconds per step (median) and shares.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import ModelConfig, get_peft_config  # noqa: E402

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer  # noqa: E402
from score_trl.pipeline import ScoreScriptArguments  # noqa: E402
from score_trl.run_inputs import resolve_inputs  # noqa: E402
from score_trl.stages import build_trainer, model_init_kwargs, stage_configs  # noqa: E402
from score_trl.tasks import parse_with_recipe  # noqa: E402


@dataclass
class ProfileArguments:
    """How many steps are profiled."""

    steps: int = field(default=3, metadata={"help": "Timed training steps."})
    warmup: int = field(default=1, metadata={"help": "Untimed steps first (allocations, kernel selection)."})
    compact_head: bool = field(
        default=True,
        metadata={
            "help": "False: TRL's LM head scores every position on a CPU too (the cost before score-trl's seam)."
        },
    )


class _StepClock(TrainerCallback):
    """Seconds per part, per step: the wrapped methods add to `current`; each step's totals go to `steps`."""

    def __init__(self):
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.current, self.started = defaultdict(float), time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.current["step"] = time.perf_counter() - self.started
        self.steps.append(dict(self.current))

    def timed(self, fn, label):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[label(*args, **kwargs) if callable(label) else label] += time.perf_counter() - start

        return wrapper


def instrument(trainer: MultiTurnRLOOTrainer, clock: _StepClock) -> None:
    """Wrap the methods that do each part of a step, on this trainer instance only."""
    turns = {"n": 0}
    in_loss = {"on": False}

    def generation_label(*args, **kwargs):
        turns["n"] += 1
        return f"generate turn {(turns['n'] - 1) % trainer.args.num_turns + 1}"

    def logps_label(model, *args, **kwargs):
        return "policy forward" if in_loss["on"] else "reference / old log-probs forward"

    trainer._generate_single_turn = clock.timed(trainer._generate_single_turn, generation_label)
    trainer._calculate_rewards = clock.timed(trainer._calculate_rewards, "rewards")
    trainer._get_per_token_logps_and_entropies = clock.timed(trainer._get_per_token_logps_and_entropies, logps_label)
    compute_loss = trainer._compute_loss

    def loss(model, inputs):
        in_loss["on"] = True
        try:
            return compute_loss(model, inputs)
        finally:
            in_loss["on"] = False

    trainer._compute_loss = loss
    trainer.accelerator.backward = clock.timed(trainer.accelerator.backward, "policy backward")


def main(opts: ProfileArguments, script_args: ScoreScriptArguments, args: MultiTurnRLOOConfig, model_args) -> None:
    if script_args.torch_threads:
        torch.set_num_threads(script_args.torch_threads)
    inputs = resolve_inputs(script_args, model_args.model_name_or_path)
    # the recipe's Stage II, with the steps to time and nothing written
    profiled = dataclasses.replace(script_args, stage="2")
    changes = {"max_steps": opts.warmup + opts.steps, "save_strategy": "no", "report_to": [], "disable_tqdm": True}
    changes.update(logging_steps=1, model_init_kwargs=model_init_kwargs(args, model_args))
    peft_config = get_peft_config(model_args)
    make_config = stage_configs(profiled, args, inputs.task, inputs.model_path, peft_config is not None, **changes)[
        "stage2"
    ]
    args = make_config()
    trainer = build_trainer(
        MultiTurnRLOOTrainer, inputs.model_path, args, inputs.train, inputs.task.reward, peft_config
    )
    if not opts.compact_head:
        import trl.trainer.utils as trl_utils
        from trl.kernels import chunked_logprob

        trl_utils._use_triton = chunked_logprob._use_triton
    clock = _StepClock()
    trainer.add_callback(clock)
    instrument(trainer, clock)
    trainer.train()

    timed = clock.steps[opts.warmup :]
    parts = sorted({key for step in timed for key in step} - {"step"})
    total = statistics.median(step["step"] for step in timed)
    samples = args.per_device_train_batch_size * args.gradient_accumulation_steps
    print(
        f"{model_args.model_name_or_path}: {samples} two-turn samples per step, {args.max_completion_length} tokens "
        f"per turn at most, {torch.get_num_threads()} thread(s), bf16 {args.bf16}, "
        f"dtype {model_args.dtype}, LoRA {model_args.use_peft}, compact head {opts.compact_head}; median of "
        f"{len(timed)} steps"
    )
    for part in parts:
        seconds = statistics.median(step.get(part, 0.0) for step in timed)
        print(f"  {part:<36} {seconds:7.2f} s  {seconds / total:6.1%}")
    rest = total - sum(statistics.median(step.get(part, 0.0) for step in timed) for part in parts)
    print(f"  {'other (optimizer, logging)':<36} {rest:7.2f} s  {rest / total:6.1%}")
    print(f"  {'step':<36} {total:7.2f} s")
    completion = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    if completion:
        print(f"  mean completion length (y1 | s2 | y2): {completion[-1]['completions/mean_length']:.0f} tokens")


if __name__ == "__main__":
    types = (ProfileArguments, ScoreScriptArguments, MultiTurnRLOOConfig, ModelConfig)
    main(*parse_with_recipe(types))

"""What a run leaves that can be committed, and what makes resuming it safe.

- `run_metrics.json` in the run's output directory: the run's settings, every evaluation and each stage's training
  curves (the trainer's log history), rewritten at every log, so that a run stopped at any point has its curves so
  far, and no weights.
- `score_run.json` beside it: the settings a resumed run must share with the run that wrote the checkpoints; a run
  of another model or config stops with an error that names each difference.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


__all__ = ["RunRecord", "check_same_run", "run_fingerprint"]

# Trainer settings that change what a run computes. `max_steps` is left out: extending a finished run is a resume.
_FINGERPRINT_FIELDS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "temperature",
    "alpha",
    "turn_betas",
    "turn_discount",
    "turn_weights",
    "turn_instruction",
    "num_turns",
    "seed",
    "bf16",
)
_SCRIPT_FIELDS = (
    "task",
    "stage",
    "stage1_max_steps",
    "stage1_turn_betas",
    "stage2_turn_betas",
    "stage2_reference",
    "turn_feedback",
    "max_eval_samples",
    "eval_max_new_tokens",
    "eval_do_sample",
    "eval_samples_per_problem",
)
_MODEL_FIELDS = (
    "model_name_or_path",
    "dtype",
    "use_peft",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "load_in_4bit",
    "load_in_8bit",
)


def run_fingerprint(script_args, args, model_args) -> dict[str, Any]:
    """The settings two runs must share for one to resume the other's checkpoints."""
    values = {name: getattr(script_args, name, None) for name in _SCRIPT_FIELDS}
    values.update({name: getattr(model_args, name, None) for name in _MODEL_FIELDS})
    values.update({name: getattr(args, name, None) for name in _FINGERPRINT_FIELDS})
    return json.loads(json.dumps(values, default=str))  # as it reads back from the file


def _resumable(output_dir: str) -> bool:
    """Whether `output_dir` holds a checkpoint or a finished stage that a run there would pick up."""
    root = Path(output_dir)
    return any(root.rglob("checkpoint-*")) or any(root.rglob("train_results.json"))


def check_same_run(output_dir: str, fingerprint: dict[str, Any]) -> bool:
    """Whether a run with `fingerprint` resumes what `output_dir` holds: False where there is nothing to resume (the
    fingerprint is recorded anew), True where the recorded one is the same; an error where they differ."""
    path = Path(output_dir, "score_run.json")
    if path.exists() and _resumable(output_dir):
        recorded = json.loads(path.read_text())
        differences = [
            f"{key}: {recorded.get(key)!r} there, {fingerprint.get(key)!r} now"
            for key in sorted(set(recorded) | set(fingerprint))
            if recorded.get(key) != fingerprint.get(key)
        ]
        if differences:
            raise ValueError(
                f"{output_dir} holds a run of other settings, which this run would resume: "
                + "; ".join(differences)
                + ". Use another output_dir, or the settings of the run there."
            )
        return True
    os.makedirs(output_dir, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=2) + "\n")
    return False


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RunRecord(TrainerCallback):
    """`run_metrics.json` of a run: its settings, its evaluations by name and each stage's curves by stage name.

    Attach it to a stage's trainer with `for_stage(name)`; it rewrites the file at every log, from the trainer's
    whole log history (which a resumed trainer reloads from its checkpoint), so the file never holds a log twice.
    """

    def __init__(self, path: str, fingerprint: dict[str, Any] | None = None, resume: bool = False):
        self.path = Path(path)
        self.data: dict[str, Any] = {"settings": fingerprint or {}, "evaluations": {}, "curves": {}, "wall_s": {}}
        if resume and self.path.exists():  # what earlier sessions of this run recorded
            self.data.update({**json.loads(self.path.read_text()), "settings": self.data["settings"]})
        self.stage: str | None = None

    @property
    def evaluations(self) -> dict[str, dict]:
        return self.data["evaluations"]

    def for_stage(self, name: str) -> RunRecord:
        self.stage = name
        return self

    def add_evaluation(self, name: str, metrics: dict[str, float]) -> None:
        self.data["evaluations"][name] = {key: _finite(value) for key, value in metrics.items()}
        self._write()

    def add_wall_time(self, name: str, seconds: float) -> None:
        """Seconds `name` (a stage, an evaluation) took, added to what earlier sessions of the run took."""
        self.data["wall_s"][name] = round(self.data["wall_s"].get(name, 0.0) + seconds, 1)
        self._write()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.stage is not None and state.is_world_process_zero:
            self.data["curves"][self.stage] = [
                {key: _finite(value) for key, value in entry.items() if isinstance(value, int | float)}
                for entry in state.log_history
            ]
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(self.data, indent=1) + "\n")
        partial.replace(self.path)  # a crash mid-write leaves the last whole file

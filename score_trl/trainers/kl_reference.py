"""Which model the multi-turn trainers' KL term compares with, and how GRPOTrainer is made to build it.

TRL 1.16 builds the reference model with `from_pretrained(model.config._name_or_path)` while `GRPOTrainer.__init__`
runs (when `beta != 0`). That is the wrong model when `args.ref_model_name_or_path` names another, and fails for a
model passed as an object (no path, or weights that differ from its files). `kl_reference` gives the name to build it
from; the trainer writes it into the policy's config at the `create_accelerator_and_postprocess` seam and restores
the policy's own name afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from accelerate.utils import is_peft_model
from transformers import AutoConfig, PreTrainedModel

from ..loading import PACKAGED_MODELS
from .multi_turn_rloo_config import MultiTurnRLOOConfig


__all__ = ["kl_reference"]


def _refuse_gguf(what: str, name: object) -> None:
    """TRL, vLLM and `from_pretrained` read checkpoints by name, and none of them reads a GGUF file."""
    if isinstance(name, str) and (name.lower().endswith(".gguf") or name in PACKAGED_MODELS):
        raise ValueError(
            f"{what}={name!r} is a GGUF model, which TRL cannot load by name: pass its converted checkpoint, "
            f"`score_trl.loading.resolve_model_path({name!r})` (score_trl.pipeline converts it itself)."
        )


@contextlib.contextmanager
def kl_reference(
    model: str | PreTrainedModel, args: MultiTurnRLOOConfig, peft_config: object = None
) -> Iterator[str | None]:
    """The name GRPOTrainer should build the KL reference from while the trainer is built inside the block, or None
    where TRL's own choice (the policy's name) is right: no KL (`beta` 0), a policy named by path, or PEFT (the
    reference is the policy with its adapter disabled).

    `args.ref_model_name_or_path` when set; else, for a policy passed as an object, a temporary save of it, deleted
    when the block ends. Refused: a GGUF name, a named reference with PEFT, and with colocated vLLM a reference of
    another kind of model than the policy.
    """
    named = args.ref_model_name_or_path
    _refuse_gguf("model", model)
    _refuse_gguf("ref_model_name_or_path", named)
    peft = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
    if named is not None and peft:
        raise ValueError(
            "ref_model_name_or_path is not supported with PEFT: the reference is the model with its adapter "
            "disabled. Unset it, or train without `peft_config`."
        )
    if named is not None and args.use_vllm and args.vllm_mode == "colocate":
        # TRL's colocated vLLM engine is built from the model's name, the reference's while GRPOTrainer.__init__
        # runs; the policy's weights are synced into it before the first generation, so both must be alike.
        policy = AutoConfig.from_pretrained(model) if isinstance(model, str) else model.config
        reference = AutoConfig.from_pretrained(named)
        if (policy.model_type, policy.vocab_size) != (reference.model_type, reference.vocab_size):
            raise ValueError(
                f"ref_model_name_or_path={named!r} is not the policy's kind of model, which vllm_mode='colocate' "
                "needs (same model_type and vocab_size). Use vllm_mode='server'."
            )
    if args.beta == 0.0 or (named is None and (isinstance(model, str) or peft)):
        yield None
    elif named is not None:
        yield named
    else:
        with tempfile.TemporaryDirectory() as copy:
            model.save_pretrained(copy)
            yield copy

"""Loading a saved model to evaluate it or train from it: whole on every process, with one-line errors."""

from __future__ import annotations

import contextlib
import os

from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.integrations import unset_hf_deepspeed_config


__all__ = ["ModelLoadError", "load_model_and_tokenizer", "whole_models"]


class ModelLoadError(OSError):
    """The model named on the command line cannot be loaded; the message is one line that says why."""


def load_model_and_tokenizer(model_name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a saved directory or a Hub id.

    Raises `ModelLoadError` with a one-line reason where transformers would end in a traceback about repo ids: a path
    that does not exist, a directory that holds no model, a Hub id that cannot be loaded (offline, or a typo).
    """
    path = os.path.expanduser(model_name_or_path)
    is_dir = os.path.isdir(path)
    if not is_dir:
        try:
            validate_repo_id(path)
        except HFValidationError:
            raise ModelLoadError(
                f"the model path {model_name_or_path!r} does not exist (and is not a Hub model id): pass the "
                "directory of a saved model, a Hub id, or 'embedded'."
            ) from None
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype="auto"), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        where = "holds no loadable model" if is_dir else "is not a local directory, and loading it from the Hub failed"
        hint = (
            "" if is_dir else " Without network access, pass a local directory, or run the offline embedded default."
        )
        raise ModelLoadError(f"the model {model_name_or_path!r} {where}: {reason}.{hint}") from error


@contextlib.contextmanager
def whole_models(args=None):
    """Models loaded inside are whole on every process, also while a ZeRO-3 training config (`args`) exists.

    Once a ZeRO-3 config exists, transformers builds every model partitioned across processes: evaluation's
    `generate` then fails ("'weight' must be 2-D") and pretraining the embedded base on the main process alone hangs.
    The trainers partition their own models when they are built.
    """
    plugin = getattr(args, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()

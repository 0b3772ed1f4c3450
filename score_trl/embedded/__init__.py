"""The embedded task and its base model, one room: "solve a * x + b = t mod 10" (`task`), and the tiny Llama
pretrained on its solver traces (`base_model`), so that the whole method runs offline on a CPU in minutes."""

from .base_model import EmbeddedRecipe, base_model_path, build_base_model, cached_model, pretrain
from .task import EMBEDDED_INSTRUCTION, build_tokenizer, make_problems, solver_trace, split_problems


__all__ = [
    "EMBEDDED_INSTRUCTION",
    "EmbeddedRecipe",
    "base_model_path",
    "build_base_model",
    "build_tokenizer",
    "cached_model",
    "make_problems",
    "pretrain",
    "solver_trace",
    "split_problems",
]

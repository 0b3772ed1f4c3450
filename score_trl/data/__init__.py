"""Data: the embedded offline task, and loaders that bring MATH and code sets to one row format."""

from .embedded import EMBEDDED_INSTRUCTION, EmbeddedRecipe, build_base_model, build_tokenizer, split_problems


__all__ = ["EMBEDDED_INSTRUCTION", "EmbeddedRecipe", "build_base_model", "build_tokenizer", "split_problems"]

"""A tiny causal LM from transformers' own Qwen2 or Llama classes, sized for a CPU: the embedded task's base model
and the offline test kit (`score_trl.testing`) both build theirs here."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config


__all__ = ["build_tiny_model"]


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    architecture: str = "qwen2",
    hidden_size: int = 16,
    seed: int = 0,
    num_layers: int = 2,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 1024,
) -> PreTrainedModel:
    """A small causal LM (a few thousand parameters by default), from transformers' own Qwen2 or Llama classes."""
    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[architecture]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model

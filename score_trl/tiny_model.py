"""A tiny causal LM and tokenizer built locally from transformers' own Qwen2 or Llama classes, sized for a CPU.

The embedded task's base model is one (`score_trl.embedded.base_model`); the tests, the docs' examples and
`benchmarks/speed.py` train another, offline, with a byte-level tokenizer and a ChatML chat template:

>>> from score_trl.tiny_model import save_tiny_model
>>> path = save_tiny_model("/tmp/tiny")  # doctest: +SKIP
>>> # then: StageOneTrainer(model=path, ...) or AutoModelForCausalLM.from_pretrained(path)
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config

from .prompts import CODE_CORRECTION_INSTRUCTION, MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT


__all__ = ["CHAT_TEMPLATE", "build_tiny_model", "build_tiny_tokenizer", "save_tiny_model"]


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


# ChatML, with `{% generation %}` around assistant content so TRL's `assistant_only_loss` can find it.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "The final answer is $4$. I hope it is correct.",
    "Solve 3x + 1 = 7. Answer: \\boxed{2}. Check: 3*2+1=7, ok.",
    "def add(a, b):\n    return a + b\n",
    "There might be an error in the solution above. Please correct the error, if any, and rewrite the solution.",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) { } [ ] \\frac \\sqrt",
    # the package's instructions tokenise to about a token a word, as with a real tokenizer
    MATH_SYSTEM_PROMPT,
    MATH_CORRECTION_INSTRUCTION,
    CODE_CORRECTION_INSTRUCTION,
]


def build_tiny_tokenizer(
    pad_is_eos: bool = False, vocab_size: int = 512, bos: bool = False
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text round-trips) trained on a few lines, with a ChatML chat template.

    `pad_is_eos=True` builds the common pad == eos case (Llama/Qwen base models) that masks must survive. `bos=True`
    adds a BOS token, as Llama's tokenizers do: before plain text (a special token) and in the chat template.
    """
    specials = ["<|im_start|>", "<|im_end|>"] + ([] if pad_is_eos else ["<|pad|>"]) + (["<|bos|>"] if bos else [])
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    if bos:
        bos_id = tokenizer.token_to_id("<|bos|>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|bos|>" if bos else None,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>" if pad_is_eos else "<|pad|>",
        chat_template=("{{- bos_token }}" + CHAT_TEMPLATE) if bos else CHAT_TEMPLATE,
        padding_side="left",
    )


def save_tiny_model(
    path: str | Path,
    architecture: str = "qwen2",
    pad_is_eos: bool = False,
    hidden_size: int = 16,
    seed: int = 0,
    bos: bool = False,
) -> str:
    """Build the tiny model and tokenizer and save both to `path`, so trainers can load them by path."""
    tokenizer = build_tiny_tokenizer(pad_is_eos=pad_is_eos, bos=bos)
    model = build_tiny_model(tokenizer, architecture=architecture, hidden_size=hidden_size, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)

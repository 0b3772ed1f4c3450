"""An offline kit: a tiny causal LM and a locally built tokenizer, for tests and smoke runs with no hub access.

>>> from score_trl.testing import save_tiny_model
>>> path = save_tiny_model("/tmp/tiny")  # doctest: +SKIP
>>> # then: StageOneTrainer(model=path, ...) or AutoModelForCausalLM.from_pretrained(path)
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .data.tiny_model import build_tiny_model
from .prompts import CODE_CORRECTION_INSTRUCTION, MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT


__all__ = ["CHAT_TEMPLATE", "build_tiny_model", "build_tiny_tokenizer", "busy_cores", "save_tiny_model"]

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


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """`n` processes spinning on the CPU while the block runs, as other jobs on the machine would (two trainings
    beside the code reward): for tests that an outcome does not depend on the machine being quiet. Each is a session
    of its own, as another job is: where the kernel groups a session's processes for fair scheduling (autogroup), a
    spinner in the caller's session would share the caller's group and barely slow a sandbox in another."""
    # each spinner stops by itself once its parent is gone: a test killed mid-way leaves no core spinning
    parent = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(1_000_000):\n        pass\n"
    spin = [sys.executable, "-I", "-S", "-c", parent]
    spinners = [subprocess.Popen(spin, stdin=subprocess.DEVNULL, start_new_session=True) for _ in range(n)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()

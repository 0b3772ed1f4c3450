"""How far bfloat16 moves what the trainer computes: per-token log-probs of sampled completions, and the k3 KL and
the policy-gradient loss built from them, bfloat16 weights against float32 weights of the same model.

    python benchmarks/bf16_logprobs.py --model smollm2-135m-instruct

Completions are sampled once (float32, temperature 0.2) from the arithmetic task's prompts; both models then score
the same tokens with TRL's fused LM head, as the trainer does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import TrlParser  # noqa: E402
from trl.trainer.utils import add_fused_lm_head  # noqa: E402

from score_trl.data.arithmetic import split_arithmetic  # noqa: E402
from score_trl.loading import resolve_model_path  # noqa: E402
from score_trl.trainers.trl_internals import score_labelled_positions_on_cpu  # noqa: E402


@dataclass
class Bf16Arguments:
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "The model (path, .gguf or packaged name)."})
    prompts: int = field(default=16, metadata={"help": "Prompts sampled and scored."})
    tokens: int = field(default=96, metadata={"help": "Tokens sampled per prompt."})
    threads: int = field(default=2, metadata={"help": "Torch threads."})


def main(opts: Bf16Arguments) -> None:
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    path = resolve_model_path(opts.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    models = {
        dtype: AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval() for dtype in ("float32", "bfloat16")
    }
    rows = split_arithmetic()[1][: opts.prompts]
    batch = tokenizer.apply_chat_template(
        [r["prompt"] for r in rows], add_generation_prompt=True, return_dict=True, return_tensors="pt", padding=True
    )
    with torch.no_grad():
        sequences = models["float32"].generate(
            **batch, max_new_tokens=opts.tokens, do_sample=True, temperature=0.2, top_k=0, top_p=1.0,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    prompt_width = batch["input_ids"].shape[1]
    mask = torch.cat([batch["attention_mask"], (sequences[:, prompt_width:] != tokenizer.pad_token_id).long()], 1)
    labels = sequences.masked_fill(mask == 0, -100)
    labels[:, :prompt_width] = -100
    score_labelled_positions_on_cpu()
    logps = {}
    for dtype, model in models.items():
        add_fused_lm_head(model, temperature=0.2)
        with torch.no_grad():
            out = model(input_ids=sequences, attention_mask=mask, labels=labels, fused_lm_head=True)
        logps[dtype] = out.log_probs[:, prompt_width - 1 :].float()
    valid = labels[:, prompt_width:] != -100
    diff = (logps["bfloat16"] - logps["float32"])[valid].abs()
    # The k3 KL of the bf16 scores against the fp32 ones (what a bf16 policy would report against an fp32 reference
    # with identical weights), and the relative change of a policy-gradient loss with random +-1 advantages.
    delta = (logps["float32"] - logps["bfloat16"])[valid]
    k3 = (delta.exp() - delta - 1).mean()
    advantages = torch.randint(0, 2, (valid.shape[0], 1), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    losses = {d: -(advantages * lp.masked_fill(~valid, 0)).sum() / valid.sum() for d, lp in logps.items()}
    print(f"{opts.model}: {int(valid.sum())} sampled tokens from {opts.prompts} prompts, scored at temperature 0.2")
    print(f"|log p(bf16) - log p(fp32)|: mean {diff.mean():.4f}, p99 {diff.quantile(0.99):.4f}, max {diff.max():.4f}")
    print(f"mean log p: fp32 {logps['float32'][valid].mean():.4f}, bf16 {logps['bfloat16'][valid].mean():.4f}")
    print(f"k3 KL(bf16 || fp32) per token: {k3:.2e}")
    print(f"policy-gradient loss: fp32 {losses['float32']:.5f}, bf16 {losses['bfloat16']:.5f}")


if __name__ == "__main__":
    (bf16_args,) = TrlParser((Bf16Arguments,)).parse_args_and_config()
    main(bf16_args)

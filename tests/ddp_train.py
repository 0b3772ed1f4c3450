"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: a short Stage II run per rank."""

import hashlib
import json
import os
import sys

import torch


torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer  # noqa: E402
from score_trl.rewards import completion_text  # noqa: E402


def varied_reward(prompts, completions, **kwargs):
    return [float(any(ch.isdigit() for ch in completion_text(c))) for c in completions]


def main(model_path: str, out_dir: str) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}]} for i in range(8)]
    args = MultiTurnRLOOConfig(
        output_dir=out_dir,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=4,
        max_steps=2,
        learning_rate=0.05,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    trainer = MultiTurnRLOOTrainer(model_path, varied_reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    digest = hashlib.sha256()
    for _, p in sorted(trainer.model.named_parameters()):
        digest.update(p.detach().cpu().numpy().tobytes())
    rank = trainer.accelerator.process_index
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "rank": rank,
                "world_size": trainer.accelerator.num_processes,
                "global_step": trainer.state.global_step,
                "params": digest.hexdigest(),
                "logged": sorted(trainer.state.log_history[0]),
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

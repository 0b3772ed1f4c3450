"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: a short Stage II run per rank."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch


torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402

from score_trl import MultiTurnRLOOTrainer  # noqa: E402
from tests.test_trainers import make_args, varied_reward  # noqa: E402


def main(model_path: str, out_dir: str) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}]} for i in range(8)]
    args = make_args(Path(out_dir), num_generations=2, per_device_train_batch_size=2, max_completion_length=4)
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

"""Run by tests/test_deepspeed.py: a few steps of StageOneTrainer and MultiTurnRLOOTrainer per rank.

Launched under DeepSpeed (`accelerate launch --config_file recipes/accelerate_configs/zero{2,3}.yaml ...`) or, for
the reference, under `torchrun` (DDP) or plain `python`. Each rank writes `<trainer>/rank<r>.json` (what wrapped the
model, what was logged) and `<trainer>/rank<r>.pt` (the full final weights, gathered under ZeRO-3).

    python tests/deepspeed_train.py MODEL_PATH OUT_DIR [stage1,stage2]
"""

import json
import sys
from pathlib import Path

import torch


torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402

from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer  # noqa: E402
from tests.test_trainers import make_args, varied_reward  # noqa: E402


TRAINERS = {"stage1": (StageOneTrainer, StageOneConfig), "stage2": (MultiTurnRLOOTrainer, MultiTurnRLOOConfig)}


def full_weights(trainer) -> dict[str, torch.Tensor]:
    params = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    if trainer.is_deepspeed_enabled and trainer.model_wrapped.zero_optimization_stage() == 3:
        import deepspeed

        # each rank holds a shard: gather every parameter to compare whole models
        with deepspeed.zero.GatheredParameters(list(params.values())):
            return {name: p.detach().clone() for name, p in params.items()}
    return {name: p.detach().clone() for name, p in params.items()}


def describe(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}" if obj is not None else "None"


def run(name: str, model_path: str, out_dir: Path) -> None:
    trainer_cls, config_cls = TRAINERS[name]
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}]} for i in range(8)]
    args = make_args(
        out_dir / name,
        config_cls,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=4,
        max_steps=3,
    )
    trainer = trainer_cls(model_path, varied_reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    rank = trainer.accelerator.process_index
    engine = trainer.model_wrapped
    record = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "deepspeed": trainer.is_deepspeed_enabled,
        "engine": [f"{c.__module__}.{c.__qualname__}" for c in type(engine).__mro__],
        "zero_stage": engine.zero_optimization_stage() if trainer.is_deepspeed_enabled else None,
        "optimizer": describe(getattr(engine, "optimizer", None)),
        "ref_model": [f"{c.__module__}.{c.__qualname__}" for c in type(trainer.ref_model).__mro__],
        "ref_zero_stage": trainer.ref_model.zero_optimization_stage() if trainer.is_deepspeed_enabled else None,
        "logs": [h for h in trainer.state.log_history if "turn1/kl" in h],
    }
    weights = full_weights(trainer)
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    torch.save(weights, out_dir / name / f"rank{rank}.pt")
    (out_dir / name / f"rank{rank}.json").write_text(json.dumps(record))


def main(model_path: str, out_dir: str, names: str = "stage1,stage2") -> None:
    for name in names.split(","):
        run(name, model_path, Path(out_dir))
    if torch.distributed.is_initialized():
        # without it, one 2-process DeepSpeed run in six aborted at exit (measured in issue 13)
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])

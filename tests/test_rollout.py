import pytest
from transformers import AutoTokenizer

from score_trl.prompts import MATH_CORRECTION_INSTRUCTION
from score_trl.rollout import MultiTurnRollout, build_chat_suffix, build_text_suffix, generate_turns


@pytest.fixture(params=["tiny_model_path", "tiny_model_path_pad_eos"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(request.getfixturevalue(request.param))


def _template(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]


def test_turn_two_prompt_matches_the_chat_template(tokenizer):
    """prompt ids + y1 ids + suffix == the template applied to [x, y1, instruction], token for token."""
    problem = [{"role": "user", "content": "What is 3 + 4? Put it in \\boxed{}."}]
    y1_text = "3 + 4 = \\boxed{8}"
    y1 = tokenizer(y1_text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]  # as sampled
    suffix = build_chat_suffix(tokenizer, MATH_CORRECTION_INSTRUCTION, [tokenizer.eos_token_id])
    turn_two = _template(tokenizer, problem) + y1 + suffix.after(y1)
    expected = _template(
        tokenizer,
        [
            *problem,
            {"role": "assistant", "content": y1_text},
            {"role": "user", "content": MATH_CORRECTION_INSTRUCTION},
        ],
    )
    assert turn_two == expected


def test_truncated_attempt_gets_its_end_of_turn(tokenizer):
    suffix = build_chat_suffix(tokenizer, "Try again.", [tokenizer.eos_token_id])
    truncated = tokenizer("no end", add_special_tokens=False)["input_ids"]
    assert suffix.after(truncated)[0] == tokenizer.eos_token_id
    assert suffix.after([*truncated, tokenizer.eos_token_id])[0] != tokenizer.eos_token_id


def test_missing_chat_template_is_a_clear_error(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template.*instruction_template"):
        build_chat_suffix(tokenizer, "Try again.", [tokenizer.eos_token_id])


def test_text_suffix(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    suffix = build_text_suffix(tokenizer, "Fix it.", "\n\n{instruction}\n\n")
    assert suffix.close == ()
    assert tokenizer.decode(list(suffix.instruction)) == "\n\nFix it.\n\n"


def test_generate_turns_builds_labels_and_contexts():
    calls = []

    def fake_generate(prompts, n):
        calls.append(([list(p) for p in prompts], n))
        return [[100 + len(p), 9] for p in prompts], None  # 9 plays the end-of-turn token

    from score_trl.rollout import TurnSuffix

    suffix = TurnSuffix(close=(9, 7), instruction=(5, 6))
    rollout = generate_turns(fake_generate, [[1, 2], [1, 2, 3]], [[suffix, suffix]], num_generations=2)
    assert calls[0] == ([[1, 2], [1, 2, 3]], 2)
    # turn 2 sees prompt + y1 + (close without the end-of-turn y1 already has) + instruction, once per sample
    assert calls[1] == ([[1, 2, 102, 9, 7, 5, 6], [1, 2, 3, 103, 9, 7, 5, 6]], 1)
    assert rollout.completion_ids()[0] == [102, 9, 7, 5, 6, 107, 9]
    assert rollout.turn_labels()[0] == [1, 1, 0, 0, 0, 2, 2]
    assert rollout.turn_prompt_ids(2)[1] == calls[1][0][1]
    assert rollout.completion_logprobs() is None


def test_logprobs_are_aligned_with_zeros_on_the_instruction():
    rollout = MultiTurnRollout(
        prompt_ids=[[1]], attempts=[[[4, 5]], [[6]]], suffixes=[[[7, 8]]], logprobs=[[[-0.1, -0.2]], [[-0.3]]]
    )
    assert rollout.completion_logprobs() == [[-0.1, -0.2, 0.0, 0.0, -0.3]]

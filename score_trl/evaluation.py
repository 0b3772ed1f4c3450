"""Two-turn (or K-turn) evaluation of intrinsic self-correction: the paper's table row, plus every trace.

Generation goes through the same `generate_turns` the trainers use, with a plain batched `model.generate` backend
(greedy by default), or with `EvalSettings.use_vllm` a vLLM engine holding the model's weights (`score_trl.vllm_cpu`,
docs/vllm.md). Under `accelerate launch`, each process evaluates a shard and the main process gathers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed
from transformers.generation.utils import GenerateDecoderOnlyOutput

from .data.rows import with_ids
from .loading import load_model_and_tokenizer, whole_models
from .metrics import accuracy, clustered_standard_error, self_correction_metrics, transition_rates
from .rewards import ANSWER_FORMATS, REWARD_FUNCS, equivalent_answers, extract_final_answer, verify_math
from .rewards.feedback import FeedbackFunc
from .rollout import GenerateFn, TurnFeedbackFn, TurnInstructions, TurnRenderer, end_of_turn_ids, generate_turns
from .vllm_cpu import vllm_engine_for, vllm_generate_fn


__all__ = [
    "EvalSettings",
    "InstructionFn",
    "evaluate",
    "evaluate_checkpoint",
    "hf_generate_fn",
    "inference_scaling",
    "metrics_from_traces",
    "per_turn_feedback",
]

_GOLD_COLUMNS = {"math": ["answer"], "code": ["test_list", "test"]}

# transformers renamed generate's `past_key_values` (argument and output field) to `cache` within 5.x
_CACHE = "cache" if "cache" in {f.name for f in dataclasses.fields(GenerateDecoderOnlyOutput)} else "past_key_values"

# The instruction shown before attempt `turn` (2, 3, ...) of a dataset row, after its earlier attempts' texts:
# `MultiTurnRLOOTrainer.get_turn_instruction` has this shape, so evaluation shows what training showed, per row.
InstructionFn = Callable[[dict, int, Sequence[str]], str]


def per_turn_feedback(feedback_func: FeedbackFunc | None) -> TurnFeedbackFn | None:
    """A task's `feedback(rows, last_attempts)` as `EvalSettings.feedback`, which also receives the turn; None
    (the intrinsic setting) stays None."""
    if feedback_func is None:
        return None
    return lambda rows, turn, attempts: feedback_func(rows, attempts)


@dataclass
class EvalSettings:
    """How to evaluate: turns, instruction, prompt rendering, decoding, batching.

    `instruction` is the text shown between attempts: one string for every row, or a function of (row, turn,
    earlier attempts), which is what a trainer's `get_turn_instruction` is. `feedback(rows, turn, last_attempts)`
    leads it with what a verifier tells about each last attempt (a trainer's `get_turn_feedback`); None is the
    paper's intrinsic setting. Build the settings with `EvalSettings.from_trainer(trainer, ...)` so that evaluation
    renders every turn of every row as training did; there is no default instruction here, so that no second
    default can drift from the trainer's.
    """

    num_turns: int = 2
    instruction: str | InstructionFn | None = None
    feedback: TurnFeedbackFn | None = None
    instruction_template: str = "\n\n{instruction}\n\n"
    chat_template_kwargs: dict | None = None
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    batch_size: int = 16
    correct_threshold: float = 1.0
    use_vllm: bool = False

    @classmethod
    def from_trainer(cls, trainer, **changes) -> EvalSettings:
        """Settings that render turns as `trainer` (a `MultiTurnRLOOTrainer`) does: its `get_turn_instruction`, a
        subclass's override included, and its config's template, chat-template arguments and threshold; plus
        `changes` (decoding, batching)."""
        changes = {"feedback": getattr(trainer, "get_turn_feedback", None), **changes}
        return cls.from_config(trainer.args, trainer.get_turn_instruction, **changes)

    @classmethod
    def from_config(
        cls, args, instruction: str | InstructionFn, feedback_func: FeedbackFunc | None = None, **changes
    ) -> EvalSettings:
        """Settings that render turns with a trainer config's (`args`) template, chat-template arguments, threshold and
        sampling temperature and the given `instruction` (and `feedback_func`, a trainer's `feedback_func`); for
        evaluating without a trainer at hand. Prefer `from_trainer` where there is one: only it carries a subclass's
        `get_turn_instruction` and `get_turn_feedback`."""
        if feedback_func is not None:
            changes = {"feedback": per_turn_feedback(feedback_func), **changes}
        values = {
            "num_turns": args.num_turns,
            # sampled evaluation draws as training drew (greedy evaluation ignores it)
            "temperature": args.temperature,
            "instruction": instruction,
            "instruction_template": args.instruction_template,
            "chat_template_kwargs": args.chat_template_kwargs,
            "correct_threshold": args.correct_threshold,
        }
        return cls(**{**values, **changes})

    def instruction_for(self, row: dict, turn: int, attempts: Sequence[str] = ()) -> str:
        """The instruction shown before attempt `turn` (2, 3, ...) of `row`, after its earlier `attempts` (texts)."""
        if self.instruction is None:
            raise ValueError(
                "EvalSettings.instruction is not set: build the settings with `EvalSettings.from_trainer(trainer)` "
                "(the instruction training showed), or pass the instruction (e.g. `get_task(name).instruction`)."
            )
        return self.instruction(row, turn, attempts) if callable(self.instruction) else self.instruction


def hf_generate_fn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: EvalSettings,
    progress: tqdm | None = None,
    logprobs: bool = False,
) -> GenerateFn:
    """A `GenerateFn` over `model.generate`: left-padded batches, each row cut after its first end-of-turn token.

    A call whose prompts extend the previous call's rows by what it generated (the next turn of `generate_turns`, for
    prompts that fit one batch) continues from that call's KV cache: only the instruction between the turns is
    encoded, not the problem and the attempt again. With `logprobs`, each generated token's log-probability under
    the model's (unprocessed) logits comes back too.
    """
    eos_ids = set(end_of_turn_ids(tokenizer, model.generation_config.eos_token_id))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    last: dict = {}  # the previous batch: its prompts, what was generated for them, its sequences, mask and cache

    def continuation(batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(input ids, attention mask) that continue the previous batch's cache, or None if `batch` does not."""
        if not last or len(batch) != len(last["prompts"]):
            return None
        heads = [prompt + attempt for prompt, attempt in zip(last["prompts"], last["attempts"], strict=True)]
        if any(row[: len(head)] != head for row, head in zip(batch, heads, strict=True)):
            return None
        tails = [row[len(head) :] for row, head in zip(batch, heads, strict=True)]
        if not all(tails):
            return None
        width = max(map(len, tails))
        # the previous rows as generated (tokens after a row's end-of-turn are masked out), then each tail right-aligned
        kept = [[1] * len(attempt) for attempt in last["attempts"]]
        generated = last["sequences"].shape[1] - last["mask"].shape[1]
        mask = [
            [*prompt_mask, *k, *[0] * (generated - len(k)), *[0] * (width - len(t)), *[1] * len(t)]
            for prompt_mask, k, t in zip(last["mask"].tolist(), kept, tails, strict=True)
        ]
        new = torch.tensor([[pad_id] * (width - len(t)) + t for t in tails], device=model.device)
        return torch.cat([last["sequences"], new], dim=1), torch.tensor(mask, device=model.device)

    @torch.no_grad()
    def generate(prompts: list[list[int]], num_generations: int) -> tuple[list[list[int]], list | None]:
        outputs, scores = [], []
        for start in range(0, len(prompts), settings.batch_size):
            batch = prompts[start : start + settings.batch_size]
            continued = continuation(batch) if len(prompts) <= settings.batch_size else None
            if continued is not None:
                ids, mask = continued
                cache = last["cache"]
            else:
                width = max(map(len, batch))
                ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in batch], device=model.device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
                cache = None
            sampling = {"temperature": settings.temperature, "top_k": 0, "top_p": 1.0} if settings.do_sample else {}
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                **{_CACHE: cache},
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=pad_id,
                do_sample=settings.do_sample,
                return_dict_in_generate=True,
                output_logits=logprobs,
                **sampling,
            )
            new_tokens = out.sequences[:, ids.shape[1] :]
            batch_out = []
            for row in new_tokens.tolist():
                cut = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
                batch_out.append(row[:cut])
            if logprobs:
                steps = torch.stack(out.logits, dim=1).float().log_softmax(-1)
                chosen = steps.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1).tolist()
                scores += [row[: len(kept)] for row, kept in zip(chosen, batch_out, strict=True)]
            outputs += batch_out
            if len(prompts) <= settings.batch_size:
                last.update(prompts=batch, attempts=batch_out, sequences=out.sequences, mask=mask)
                last["cache"] = getattr(out, _CACHE)
            else:
                last.clear()
            if progress is not None:
                progress.update(len(batch))
        return outputs, (scores if logprobs else None)

    return generate


def _check_columns(rows: Sequence[dict], verifier: str) -> None:
    if not rows:
        raise ValueError("The evaluation set is empty.")
    if "prompt" not in rows[0]:
        raise ValueError(f"The evaluation set has no `prompt` column (columns: {sorted(rows[0])}).")
    needed = _GOLD_COLUMNS.get(verifier)
    if needed is not None and not any(column in rows[0] for column in needed):
        raise ValueError(
            f"The evaluation set has none of the columns {needed} that the `{verifier}` verifier reads "
            f"(columns: {sorted(rows[0])})."
        )


def _score(reward_func: Callable, rows: Sequence[dict], prompts: list, texts: list[str]) -> list[float | None]:
    conversational = isinstance(rows[0]["prompt"], list)
    completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    columns = {k: [row[k] for row in rows] for k in rows[0] if k != "prompt"}
    return list(reward_func(prompts=prompts, completions=completions, **columns))


def metrics_from_traces(
    traces: Sequence[dict], correct_threshold: float = 1.0, verifier: str = "math"
) -> dict[str, float]:
    """The paper's row from traces (keys `y1..yK`, `r1..rK`): first turn against last, plus Acc@t for every turn.
    `verifier` names how final answers are found and compared (`score_trl.rewards.ANSWER_FORMATS`)."""
    if not traces:
        raise ValueError("No traces to score.")
    last = max(int(key[1:]) for key in traces[0] if key.startswith("r") and key[1:].isdigit())

    def correct(turn: int) -> list:
        return [None if t[f"r{turn}"] is None else t[f"r{turn}"] >= correct_threshold for t in traces]

    texts_first, texts_last = [t["y1"] for t in traces], [t[f"y{last}"] for t in traces]
    answers = ANSWER_FORMATS.get(verifier, {"extract_answer": None})
    metrics = self_correction_metrics(correct(1), correct(last), texts_first, texts_last, **answers)
    # delta's standard error over problems: the samples of one problem (one `id`) are one draw, paired across turns.
    judged = [t for t in traces if t["r1"] is not None and t[f"r{last}"] is not None]
    if judged and "id" in judged[0]:
        gains = [float(t[f"r{last}"] >= correct_threshold) - float(t["r1"] >= correct_threshold) for t in judged]
        metrics["delta_se"] = clustered_standard_error(gains, [t["id"] for t in judged])
    if last != 2:
        metrics[f"acc_t{last}"] = metrics.pop("acc_t2")  # self_correction_metrics names the last turn "t2"
    for turn in range(2, last):
        metrics[f"acc_t{turn}"] = accuracy(correct(turn))
    if last > 2:  # does each turn add, or only repeat the one before?
        for turn in range(2, last + 1):
            for key, value in transition_rates(correct(turn - 1), correct(turn)).items():
                metrics[f"{key}_t{turn - 1}_t{turn}"] = value
    # which setting ran: 0 is the paper's intrinsic one (the same instruction whatever the attempt)
    told = [t[key] for t in traces for key in t if key.startswith("told")]
    metrics["feedback_rate"] = sum(told) / len(told) if told else 0.0
    return metrics


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict],
    verifier: str | Callable = "math",
    settings: EvalSettings | None = None,
    first_attempts: dict[str, str] | None = None,
    traces_path: str | None = None,
    metrics_path: str | None = None,
    resume: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    """Evaluate self-correction on `rows` (dicts with `prompt`, the verifier's gold columns and optionally `id`).

    `first_attempts` maps problem ids to fixed turn-1 texts (MBPP-R-style offline repair): turn 1 is then read,
    never generated. With `traces_path`, every trace is written as JSONL; with `resume`, problems already there are
    not evaluated again. Returns the metrics (and writes them to `metrics_path`) and the traces.
    """
    settings = settings or EvalSettings()
    reward_func = REWARD_FUNCS[verifier] if isinstance(verifier, str) else verifier
    rows = with_ids(rows)
    _check_columns(rows, verifier if isinstance(verifier, str) else "")
    if first_attempts is not None:
        missing = [row["id"] for row in rows if row["id"] not in first_attempts]
        if missing:
            raise ValueError(f"No fixed first attempt for {len(missing)} problem ids, e.g. {missing[:10]}.")

    done: list[dict] = []
    if resume and traces_path and os.path.exists(traces_path):
        with open(traces_path) as f:
            done = [json.loads(line) for line in f if line.strip()]
        finished = {t["id"] for t in done}
        rows = [row for row in rows if row["id"] not in finished]

    state = PartialState()
    shard = rows[state.process_index :: state.num_processes]
    traces = _evaluate_shard(model, tokenizer, shard, reward_func, settings, first_attempts) if shard else []
    traces = gather_object(traces) if state.num_processes > 1 else traces

    all_traces = done + traces
    # A reward function passed as a callable is taken for a math one, whose answers it most likely scores.
    metrics = metrics_from_traces(
        all_traces, settings.correct_threshold, verifier if isinstance(verifier, str) else "math"
    )
    if state.is_main_process:
        for path in filter(None, (traces_path, metrics_path)):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if traces_path:
            with open(traces_path, "a" if resume else "w") as f:
                f.writelines(json.dumps(trace) + "\n" for trace in traces)
        if metrics_path:
            with open(metrics_path, "w") as f:
                json.dump(metrics, f, indent=2)
    return metrics, all_traces


def evaluate_checkpoint(
    model_path: str,
    rows: Sequence[dict],
    verifier: str | Callable,
    settings: EvalSettings,
    *,
    load_args=None,
    seed: int | None = None,
    **evaluate_kwargs,
) -> tuple[dict[str, float], list[dict]]:
    """Load the model saved at `model_path` and `evaluate` it: the one evaluation wiring of the pipeline, the SFT
    baselines and `score-trl-eval`.

    The model is loaded whole on every process (also while a ZeRO-3 training config `load_args` exists) and put on
    this process's device. With `seed`, sampling is seeded here, so that an evaluation samples the same whatever ran
    before it in the process (pretraining a base model, a training stage) and a rerun prints the same table.
    `evaluate_kwargs` go to `evaluate` (`traces_path`, `metrics_path`, `first_attempts`, `resume`).
    """
    with whole_models(load_args):
        model, tokenizer = load_model_and_tokenizer(model_path)
    model.to(PartialState().device)
    if seed is not None:
        set_seed(seed)
    return evaluate(model, tokenizer, rows, verifier, settings, **evaluate_kwargs)


def _evaluate_shard(model, tokenizer, rows, reward_func, settings, first_attempts) -> list[dict]:
    prompts = [row["prompt"] for row in rows]
    conversational = isinstance(prompts[0], list)
    eos_ids = end_of_turn_ids(tokenizer, model.generation_config.eos_token_id)
    renderer = TurnRenderer(tokenizer, eos_ids, settings.instruction_template, settings.chat_template_kwargs or {})
    prompt_ids = renderer.first_turn_ids(prompts)
    generated_turns = settings.num_turns - (first_attempts is not None)
    progress = tqdm(
        total=len(rows) * generated_turns, desc="two-turn evaluation", disable=not PartialState().is_local_main_process
    )
    fixed = None
    if first_attempts is not None:
        fixed = [
            tokenizer(first_attempts[row["id"]], add_special_tokens=False)["input_ids"] + eos_ids[:1] for row in rows
        ]

    was_training = model.training
    model.eval()
    # vLLM schedules its own batches and keeps each turn's context in its prefix cache: the shard goes in one call
    engine = vllm_engine_for(model, tokenizer) if settings.use_vllm else None
    batch_size = len(rows) if engine is not None else settings.batch_size
    # All turns of one batch before the next batch: each turn continues the previous turn's KV cache (hf_generate_fn).
    # [turn][row], as the trainers build them: a row's own instruction, and feedback on its own last attempt
    attempts, instructions, told = [[] for _ in range(settings.num_turns)], [], []
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        if engine is not None:
            generate = _counting(vllm_generate_fn(engine, eos_ids, settings), progress)
        else:
            generate = hf_generate_fn(model, tokenizer, settings, progress)
        if fixed is not None:
            generate = _reading_turn_one(fixed[chunk], generate)
        chosen = TurnInstructions(renderer, rows[chunk], conversational, settings.instruction_for, settings.feedback)
        rollout = generate_turns(generate, prompt_ids[chunk], chosen, num_turns=settings.num_turns)
        for turn, turn_attempts in enumerate(rollout.attempts):
            attempts[turn] += turn_attempts
        chosen.finish(rollout)
        instructions = (
            [a + b for a, b in zip(instructions, chosen.shown, strict=True)] if instructions else chosen.shown
        )
        told = [a + b for a, b in zip(told, chosen.told, strict=True)] if told else chosen.told
    model.train(was_training)
    progress.close()

    texts = [tokenizer.batch_decode(turn_attempts, skip_special_tokens=True) for turn_attempts in attempts]
    turn_prompts, rewards = list(prompts), []
    for turn, turn_texts in enumerate(texts):
        if turn > 0:
            turn_prompts = renderer.next_turn_prompts(turn_prompts, texts[turn - 1], instructions[turn - 1])
        rewards.append(_score(reward_func, rows, turn_prompts, turn_texts))
    return [
        {
            "id": row["id"],
            **{f"y{k + 1}": texts[k][i] for k in range(len(texts))},
            **{f"r{k + 1}": rewards[k][i] for k in range(len(texts))},
            **{f"told{k + 2}": told[k][i] for k in range(len(told))},
        }
        for i, row in enumerate(rows)
    ]


def _counting(generate: GenerateFn, progress: tqdm) -> GenerateFn:
    """`generate` that advances `progress` by the rows of each call, as `hf_generate_fn` does."""

    def generate_and_count(contexts, num_generations):
        result = generate(contexts, num_generations)
        progress.update(len(contexts))
        return result

    return generate_and_count


def _reading_turn_one(fixed: list[list[int]], generate: GenerateFn) -> GenerateFn:
    """`generate` with turn 1 read from `fixed` (offline repair), not generated."""
    calls = []

    def read_then_generate(contexts, num_generations):
        calls.append(len(calls))
        return (fixed, None) if len(calls) == 1 else generate(contexts, num_generations)

    return read_then_generate


def _majority_correct(answers: list[str | None], gold: str) -> bool:
    # Votes go to classes of equivalent answers (`1/2`, `0.5` and `\frac{1}{2}` are one answer), each class named by
    # its first answer; a tie goes to the class seen first.
    classes: list[list[str]] = []
    for answer in filter(None, answers):
        same = next((c for c in classes if equivalent_answers(c[0], answer)), None)
        if same is None:
            classes.append([answer])
        else:
            same.append(answer)
    if not classes:
        return False
    return verify_math(f"\\boxed{{{max(classes, key=len)[0]}}}", gold) == 1.0


def inference_scaling(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict],
    k: int,
    settings: EvalSettings | None = None,
) -> dict[str, float]:
    """The paper's section 6.2 at a budget of `k` samples per problem (math verifier, majority vote over answers,
    equivalent answers voting together): `parallel`, k first attempts voted; `sequential`, k/2 first attempts each
    self-corrected once, the k/2 second attempts voted. Runs in one process."""
    if k < 2 or k % 2:
        raise ValueError(f"k={k}: the budget must be an even number >= 2 (k/2 attempts, each corrected once).")
    settings = settings or EvalSettings(do_sample=True)
    _check_columns(rows, "math")
    rows = with_ids(rows)
    sampled = {**settings.__dict__, "do_sample": True}
    reward = REWARD_FUNCS["math"]
    one_turn, two_turns = EvalSettings(**{**sampled, "num_turns": 1}), EvalSettings(**{**sampled, "num_turns": 2})
    parallel = _evaluate_shard(model, tokenizer, [r for r in rows for _ in range(k)], reward, one_turn, None)
    sequential = _evaluate_shard(model, tokenizer, [r for r in rows for _ in range(k // 2)], reward, two_turns, None)
    answers = {"parallel": [extract_final_answer(t["y1"]) for t in parallel]}
    answers["sequential"] = [extract_final_answer(t["y2"]) for t in sequential]
    result = {}
    for mode, per_sample in answers.items():
        group = k if mode == "parallel" else k // 2
        hits = [
            _majority_correct(per_sample[i * group : (i + 1) * group], str(row["answer"]))
            for i, row in enumerate(rows)
        ]
        result[f"{mode}_acc"] = sum(hits) / len(hits)
    result["k"] = k
    return result

"""Multi-turn rollouts at the token level: attempt, fixed instruction, attempt again.

The turn-k prompt is the turn-(k-1) context followed by the model's attempt and the instruction's token ids. An
attempt is never decoded and re-tokenised; the instruction's ids (with the chat template's turn markers around them)
come from the tokenizer's chat template by prefix difference, built once per instruction and reused.

The trained sequence is `y1 | s2 | y2 | ... | sK | yK`, with turn label k on the tokens of `yk` and 0 on the
instruction suffixes `sk`, which are attended to but carry no loss and no KL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from .prompts import next_turn_prompts, with_feedback


__all__ = [
    "MultiTurnRollout",
    "SuffixFn",
    "TurnFeedbackFn",
    "TurnInstructions",
    "TurnRenderer",
    "TurnSuffix",
    "build_chat_suffix",
    "build_suffix",
    "build_text_suffix",
    "end_of_turn_ids",
    "generate_turns",
    "require_chat_template",
]

# A generation backend: token-id prompts and a number of samples per distinct prompt in, (token ids, sampling
# log-probs or None) out, one row per prompt. TRL's `GRPOTrainer._generate_single_turn` has this shape.
GenerateFn = Callable[[list[list[int]], int], tuple[list[list[int]], list[list[float]] | None]]
# The suffixes before attempt `turn` (2, 3, ...) of every sample, from the attempts so far (`[turn][sample]` token ids):
# called between the turns, so that what the model is shown next may depend on what it answered.
SuffixFn = Callable[[int, list[list[list[int]]]], Sequence["TurnSuffix"]]
# A row's instruction before attempt `turn` (2, 3, ...), given its earlier attempts' texts: a trainer's
# `get_turn_instruction`.
InstructionFn = Callable[[dict, int, Sequence[str]], str]
# What to tell each sample about its last attempt before attempt `turn` (None: nothing): rows, the turn and the last
# attempts' texts in, one message per sample out. A trainer's `get_turn_feedback`.
TurnFeedbackFn = Callable[[Sequence[dict], int, list[str]], list["str | None"]]
# Bound on the instructions whose token ids are kept: with feedback, every distinct message makes one more.
_MAX_CACHED_SUFFIXES = 4096


@dataclass(frozen=True)
class TurnSuffix:
    """The token ids that follow a finished attempt and lead into the next one.

    `close` ends the assistant's turn as the chat template writes it, starting with its end-of-turn token (empty for
    plain-text prompts); `instruction` is the new user turn up to and including the generation prompt.
    """

    close: tuple[int, ...]
    instruction: tuple[int, ...]

    def after(self, attempt: Sequence[int]) -> list[int]:
        """The suffix for this attempt: an attempt that emitted the end-of-turn token keeps it as its own (model)
        token; a truncated one is closed here."""
        if self.close and attempt and attempt[-1] == self.close[0]:
            return [*self.close[1:], *self.instruction]
        return [*self.close, *self.instruction]


def require_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    """Conversational prompts need a chat template: say how to fix it when there is none."""
    if tokenizer.chat_template is None:
        raise ValueError(
            "The tokenizer has no chat template, but the prompts are conversational. Set `tokenizer.chat_template`, "
            "or give plain-text prompts and set `instruction_template` in the config."
        )


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool, **kwargs) -> list[int]:
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True, **kwargs
    )["input_ids"]
    return list(ids)


def build_chat_suffix(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    end_of_turn_ids: Sequence[int],
    chat_template_kwargs: dict | None = None,
) -> TurnSuffix:
    """The suffix for conversational prompts, from the chat template applied to a one-turn dummy conversation."""
    require_chat_template(tokenizer)
    kwargs = chat_template_kwargs or {}
    user = [{"role": "user", "content": "Question?"}]
    answered = [*user, {"role": "assistant", "content": "Answer."}]
    prompt_ids = _render(tokenizer, user, True, **kwargs)
    answered_ids = _render(tokenizer, answered, False, **kwargs)
    next_ids = _render(tokenizer, [*answered, {"role": "user", "content": instruction}], True, **kwargs)
    if answered_ids[: len(prompt_ids)] != prompt_ids or next_ids[: len(answered_ids)] != answered_ids:
        raise ValueError(
            "The chat template does not render a conversation as a prefix of its continuation (some templates "
            "rewrite earlier turns, e.g. by dropping reasoning). Pass a `chat_template` that appends turns, or use "
            "plain-text prompts with `instruction_template`."
        )
    answer_and_close = answered_ids[len(prompt_ids) :]
    ends = [i for i, token in enumerate(answer_and_close) if token in set(end_of_turn_ids)]
    if not ends:
        raise ValueError(
            f"The chat template closes an assistant turn with none of the end-of-turn tokens {list(end_of_turn_ids)} "
            "the model generates. Set `generation_config.eos_token_id` to the template's end-of-turn token."
        )
    return TurnSuffix(close=tuple(answer_and_close[ends[0] :]), instruction=tuple(next_ids[len(answered_ids) :]))


def build_text_suffix(tokenizer: PreTrainedTokenizerBase, instruction: str, instruction_template: str) -> TurnSuffix:
    """The suffix for plain-text prompts: `instruction_template` (with an `{instruction}` field), tokenised once."""
    text = instruction_template.format(instruction=instruction)
    return TurnSuffix(close=(), instruction=tuple(tokenizer(text, add_special_tokens=False)["input_ids"]))


def build_suffix(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    conversational: bool,
    end_of_turn_ids: Sequence[int],
    instruction_template: str,
    chat_template_kwargs: dict | None = None,
) -> TurnSuffix:
    """`build_chat_suffix` for conversational prompts, `build_text_suffix` for plain text."""
    if conversational:
        return build_chat_suffix(tokenizer, instruction, end_of_turn_ids, chat_template_kwargs)
    return build_text_suffix(tokenizer, instruction, instruction_template)


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase, generation_eos: int | list[int] | None) -> list[int]:
    """The tokens that end an attempt, as TRL's `GRPOTrainer` counts them: every end-of-sequence id the model's
    generation config declares (an end-of-turn token included), and the tokenizer's own."""
    ids = (
        [] if generation_eos is None else [generation_eos] if isinstance(generation_eos, int) else list(generation_eos)
    )
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids = [tokenizer.eos_token_id, *ids]
    return ids


@dataclass
class TurnRenderer:
    """The one owner of what the model sees at each turn, shared by the trainers and evaluation.

    - `first_turn_ids`: turn-1 token ids, rendered as TRL's `GRPOTrainer` renders prompts (the chat template with a
      generation prompt and `chat_template_kwargs`; plain text with the tokenizer's special tokens, e.g. BOS);
    - `suffix`: the token ids between an attempt and the next (see `build_suffix`), built once per instruction;
    - `next_turn_prompts`: the same prompt as text, for the reward functions.
    """

    tokenizer: PreTrainedTokenizerBase
    end_of_turn_ids: Sequence[int]
    instruction_template: str = "\n\n{instruction}\n\n"
    chat_template_kwargs: dict = field(default_factory=dict)
    _suffixes: dict = field(default_factory=dict, init=False, repr=False)

    def first_turn_ids(self, prompts: list) -> list[list[int]]:
        if isinstance(prompts[0], list):
            require_chat_template(self.tokenizer)
            rendered = self.tokenizer.apply_chat_template(
                prompts, add_generation_prompt=True, tokenize=True, return_dict=True, **self.chat_template_kwargs
            )
            return [list(ids) for ids in rendered["input_ids"]]
        return [list(ids) for ids in self.tokenizer(text=prompts)["input_ids"]]

    def suffix(self, instruction: str, conversational: bool) -> TurnSuffix:
        key = (instruction, conversational)
        if key not in self._suffixes:
            if len(self._suffixes) >= _MAX_CACHED_SUFFIXES:
                self._suffixes.clear()
            self._suffixes[key] = build_suffix(
                self.tokenizer,
                instruction,
                conversational,
                self.end_of_turn_ids,
                self.instruction_template,
                self.chat_template_kwargs,
            )
        return self._suffixes[key]

    def next_turn_prompts(self, prompts: list, attempts: list[str], instructions: list[str]) -> list:
        return next_turn_prompts(prompts, attempts, instructions, self.instruction_template)


@dataclass
class TurnInstructions:
    """The instructions of one rollout, chosen between the turns: a `SuffixFn` for `generate_turns`.

    Before attempt `turn`, sample i is shown `instruction(rows[i], turn, its earlier attempts)`, led by the message
    `feedback(rows, turn, last attempts)` gives it about its last attempt (`prompts.with_feedback`; None, or no
    feedback function: nothing, the paper's intrinsic setting). It keeps what it decoded and showed, `[turn][sample]`:
    `texts[k]` the attempts k+1 (the last one once `finish` has run), `shown[k]` the instructions before attempt k+2,
    `told[k]` whether those carried feedback.
    """

    renderer: TurnRenderer
    rows: Sequence[dict]
    conversational: bool
    instruction: InstructionFn
    feedback: TurnFeedbackFn | None = None
    texts: list[list[str]] = field(default_factory=list)
    shown: list[list[str]] = field(default_factory=list)
    told: list[list[bool]] = field(default_factory=list)

    def __call__(self, turn: int, attempts: list[list[list[int]]]) -> list[TurnSuffix]:
        self.texts.append(self.renderer.tokenizer.batch_decode(attempts[-1], skip_special_tokens=True))
        messages: list[str | None] = [None] * len(self.rows)
        if self.feedback is not None:
            messages = list(self.feedback(self.rows, turn, self.texts[-1]))
            if len(messages) != len(self.rows):
                raise ValueError(f"The feedback function gave {len(messages)} messages for {len(self.rows)} attempts.")
        shown = [
            with_feedback(self.instruction(row, turn, [texts[i] for texts in self.texts]), message)
            for i, (row, message) in enumerate(zip(self.rows, messages, strict=True))
        ]
        self.shown.append(shown)
        self.told.append([bool(m) for m in messages])
        return [self.renderer.suffix(text, self.conversational) for text in shown]

    def finish(self, rollout: MultiTurnRollout) -> None:
        """Decode the last turn's attempts too, so that `texts` holds every turn."""
        self.texts.append(self.renderer.tokenizer.batch_decode(rollout.attempts[-1], skip_special_tokens=True))


@dataclass(frozen=True)
class MultiTurnRollout:
    """What a multi-turn rollout produced, one row per sample.

    `attempts[k][i]` are the model's tokens for turn k+1 of sample i, `suffixes[k][i]` the instruction tokens before
    turn k+2, and `logprobs[k][i]` the sampler's log-probs of `attempts[k][i]` (None without vLLM).
    """

    prompt_ids: list[list[int]]
    attempts: list[list[list[int]]]
    suffixes: list[list[list[int]]]
    logprobs: list[list[list[float]]] | None

    @property
    def num_turns(self) -> int:
        return len(self.attempts)

    def completion_ids(self) -> list[list[int]]:
        """`y1 | s2 | y2 | ...` per sample: what the trainer scores and trains on after the turn-1 prompt."""
        return [self._join(i, self.attempts, self.suffixes) for i in range(len(self.prompt_ids))]

    def turn_labels(self) -> list[list[int]]:
        """Per completion token: k for a token of attempt k, 0 for an instruction token."""
        labels = [[[turn + 1] * len(row) for row in rows] for turn, rows in enumerate(self.attempts)]
        suffixes = [[[0] * len(row) for row in rows] for rows in self.suffixes]
        return [self._join(i, labels, suffixes) for i in range(len(self.prompt_ids))]

    def completion_logprobs(self) -> list[list[float]] | None:
        """Sampler log-probs aligned with `completion_ids` (0.0 on instruction tokens, which are never sampled)."""
        if self.logprobs is None:
            return None
        suffixes = [[[0.0] * len(row) for row in rows] for rows in self.suffixes]
        return [self._join(i, self.logprobs, suffixes) for i in range(len(self.prompt_ids))]

    def turn_prompt_ids(self, turn: int) -> list[list[int]]:
        """The context the model saw before attempt `turn` (1-based)."""
        rows = []
        for i, prompt in enumerate(self.prompt_ids):
            context = list(prompt)
            for k in range(turn - 1):
                context += self.attempts[k][i] + self.suffixes[k][i]
            rows.append(context)
        return rows

    @staticmethod
    def _join(i: int, attempts: list, suffixes: list) -> list:
        row = list(attempts[0][i])
        for suffix, attempt in zip(suffixes, attempts[1:], strict=True):
            row += suffix[i] + attempt[i]
        return row


def generate_turns(
    generate: GenerateFn,
    prompt_ids: list[list[int]],
    suffixes: Sequence[Sequence[TurnSuffix]] | SuffixFn,
    num_generations: int = 1,
    num_turns: int | None = None,
) -> MultiTurnRollout:
    """Run the turns of every sample, each turn a single batched `generate` call.

    `suffixes` lead into each turn after the first: `suffixes[k][i]` is the suffix before turn k+2 of sample i
    (`len(suffixes) + 1` turns), or a `SuffixFn` called before each later turn with the attempts so far (`num_turns`
    turns), for suffixes that depend on the attempts. `num_generations` applies to turn 1 only (rows of `prompt_ids`
    come repeated that many times, as TRL's sampler gives them); later turns continue each sample once.
    """
    if callable(suffixes):
        if num_turns is None:
            raise ValueError("generate_turns: give `num_turns` with a function of the attempts as `suffixes`.")
        suffixes_before = suffixes
    else:
        num_turns, fixed = len(suffixes) + 1, suffixes
        suffixes_before = lambda turn, attempts: fixed[turn - 2]  # noqa: E731
    attempts, suffix_rows, logprobs = [], [], []
    contexts = [list(ids) for ids in prompt_ids]
    for turn in range(1, num_turns + 1):
        if turn > 1:
            before = suffixes_before(turn, attempts)
            rows = [suffix.after(attempt) for suffix, attempt in zip(before, attempts[-1], strict=True)]
            contexts = [context + row for context, row in zip(contexts, rows, strict=True)]
            suffix_rows.append(rows)
        ids, lps = generate(contexts, num_generations if turn == 1 else 1)
        attempts.append([list(row) for row in ids])
        logprobs.append(lps)
        contexts = [context + row for context, row in zip(contexts, attempts[-1], strict=True)]
    has_logprobs = all(lp is not None for lp in logprobs)
    return MultiTurnRollout(prompt_ids, attempts, suffix_rows, logprobs if has_logprobs else None)

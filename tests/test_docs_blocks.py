"""Every Python block in README.md and docs/ runs here, or its page marks it illustrative.

A page's blocks run in order in one namespace (as a reader pastes them), in a fresh directory, offline: hub model ids
become the test kit's tiny model, and the trainer configs get CPU settings and one step (`TINY_RUN`) under whatever
the block sets. A block whose first line is `# file: NAME.py` is saved as that module instead, for the blocks and
commands after it. A block the page marks with `<!-- illustrative: why -->` on the line before is not run.
"""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.DOTALL)
ILLUSTRATIVE = re.compile(r"<!-- illustrative: .+ -->")
HUB_ID = re.compile(r"\"(?:Qwen|meta-llama|HuggingFaceTB|google|microsoft)/[\w.\-]+\"")
TINY_RUN = {
    "use_cpu": True,
    "bf16": False,
    "max_steps": 1,
    "max_completion_length": 8,
    "per_device_train_batch_size": 8,
    "report_to": "none",
    "save_strategy": "no",
    "logging_steps": 1,
}


def python_blocks(page: str) -> list[tuple[bool, str]]:
    """(marked illustrative, code) for each Python block of `page`, in order."""
    text = (ROOT / page).read_text()
    return [(bool(ILLUSTRATIVE.search(m["before"])), m["code"]) for m in BLOCK.finditer("\n" + text)]


def test_every_page_with_python_is_seen():
    blocks = {page: python_blocks(page) for page in PAGES}
    counted = sum(len(b) for b in blocks.values())
    fences = sum((ROOT / page).read_text().count("```python") for page in PAGES)
    assert counted == fences >= 5


RUNNABLE = [page for page in PAGES if any(not marked for marked, _ in python_blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE)
def test_python_blocks_of_the_page_run(page, tiny_model_path, tmp_path, monkeypatch):
    import score_trl

    for name in ("StageOneConfig", "MultiTurnRLOOConfig"):
        monkeypatch.setattr(score_trl, name, functools.partial(getattr(score_trl, name), **TINY_RUN))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for marked, code in python_blocks(page):
        if marked:
            continue
        code = HUB_ID.sub(repr(tiny_model_path), code)
        first = code.splitlines()[0]
        if first.startswith("# file: "):
            (tmp_path / first.removeprefix("# file: ").strip()).write_text(code)
            continue
        exec(compile(code, f"{page} block {ran + 1}", "exec"), namespace)
        ran += 1
    assert ran >= 1


def test_custom_task_runs_in_an_unmodified_example_script(tiny_model_path, tmp_path):
    """docs/custom_task.md's command line: `--task units_task:units` in examples/score_math.py as shipped, the module
    being the page's first block, trains both stages with the task's subclasses and evaluates with its verifier."""
    marked, module = python_blocks("docs/custom_task.md")[0]
    assert not marked and module.startswith("# file: units_task.py")
    (tmp_path / "units_task.py").write_text(module)
    page = (ROOT / "docs" / "custom_task.md").read_text()
    assert "examples/score_math.py --task units_task:units" in page
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    small = [
        "--max_steps",
        "1",
        "--stage1_max_steps",
        "1",
        "--max_completion_length",
        "8",
        "--eval_max_new_tokens",
        "8",
    ]
    small += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--eval_do_sample", "false"]
    small += ["--eval_samples_per_problem", "1", "--save_strategy", "no", "--torch_threads", "1"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "score_math.py"), "--task", "units_task:units"]
        + ["--model_name_or_path", tiny_model_path, "--output_dir", str(tmp_path / "units"), *small],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "task units" in result.stderr
    for row in ("| base |", "| stage I |", "| SCoRe |"):
        assert row in result.stdout
    assert "stage1 trains with UnitStageOne" in result.stderr and "stage2 trains with UnitTrainer" in result.stderr
    # Evaluation scored the task's 4 held-out rows with its own verifier (they have no `answer` column for 'math').
    traces = (tmp_path / "units" / "eval_final_traces.jsonl").read_text().splitlines()
    assert len(traces) == 4 and all('"r2": 0.0' in t or '"r2": 1.0' in t for t in traces)

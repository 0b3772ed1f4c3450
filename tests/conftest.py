import os


# Two processes on two cores with unpinned torch threads were measured 7-50x slower: pin before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def busy_machine():
    """`SCORE_TRL_BUSY_CORES=2 pytest ...`: the whole session runs with 2 other processes spinning on the cores, as
    beside two trainings; the sandbox's verdicts must be the same as on a quiet machine (docs/rewards.md). Yields how
    many: a test that makes its own load tops it up rather than doubling it."""
    busy = int(os.environ.get("SCORE_TRL_BUSY_CORES", "0"))
    if not busy:
        yield 0
        return
    from sandbox_speed import busy_cores  # benchmarks/, on pytest's pythonpath

    with busy_cores(busy):
        yield busy


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    from score_trl.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_model_path_pad_eos(tmp_path_factory):
    from score_trl.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama-pad-eos"), architecture="llama", pad_is_eos=True)


def free_port() -> int:
    """A TCP port nothing listens on, for torchrun's rendezvous (a fixed one can be held by another run)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def venv_under_tmp():
    """A pip-less virtualenv of the running interpreter under /tmp itself, whatever TMPDIR says: /tmp is what the code
    sandbox replaces with its own tmpfs. Returns its python."""
    import shutil
    import subprocess
    import sys
    import tempfile

    root = tempfile.mkdtemp(prefix="score_trl_venv_", dir="/tmp")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(root, "venv")], check=True)
    yield os.path.join(root, "venv", "bin", "python")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def descriptors_past_1024():
    """This process holding 1,100 more open descriptors, as a trainer may: select() cannot wait on their numbers."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the hard descriptor limit is below 2048 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    yield
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def task_with_rows(name: str, train: list[dict], held_out: list[dict]):
    """The built-in task `name`, its data sets replaced by these rows (for `monkeypatch.setitem(TASKS, name, ...)`)."""
    import dataclasses

    from datasets import Dataset

    from score_trl.tasks import TASKS

    return dataclasses.replace(
        TASKS[name], load_train=lambda *args: Dataset.from_list(train), load_eval=lambda *args: list(held_out)
    )

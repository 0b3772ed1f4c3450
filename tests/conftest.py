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


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    from score_trl.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_model_path_pad_eos(tmp_path_factory):
    from score_trl.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama-pad-eos"), architecture="llama", pad_is_eos=True)


def free_port() -> int:
    """A TCP port nothing listens on, for torchrun's rendezvous (a fixed one can be held by another run)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""Test-session settings shared by every test module."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Run the suite's tiny nets on one intra-op thread, then restore the setting.

    Their ops are too small to gain from threads, and on a busy 2-core machine OpenMP's
    waiting threads made the estimator tests 20 times slower (measured: 267 s against 13 s).
    """
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)

"""The ``one_thread`` fixture of the inference tests: ``from single_thread import one_thread``.

Imported into a test module, it runs that module's tests with one intra-op thread.
"""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the recurrent layers' many small ops run several times faster so on a
    busy 2-core machine (threads spin-waiting for each other), and results do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

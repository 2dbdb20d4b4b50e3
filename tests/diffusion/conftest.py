import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine is shared: one intra-op thread avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

import pytest
import torch as th

# One thread: two threads made small-network tests about 5x slower on the 2-core machines we run on.
th.set_num_threads(1)

TINY_POLICY = dict(net_arch=[32, 32])


@pytest.fixture
def tiny_policy_kwargs() -> dict:
    return dict(TINY_POLICY)

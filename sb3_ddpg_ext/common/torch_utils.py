"""Small torch helpers shared by the algorithm."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn


def concatenate_observations(first: PyTorchObs, second: PyTorchObs) -> PyTorchObs:
    """Stack two batches of observations (tensors, or dicts of tensors) along the batch dimension."""
    if isinstance(first, dict):
        assert isinstance(second, dict)
        return {key: th.cat([first[key], second[key]]) for key in first}
    assert isinstance(second, th.Tensor)
    return th.cat([first, second])


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """
    Run a block with ``model`` in evaluation mode (normalisation layers use, and keep, their running statistics),
    then put it back in the mode it was in.
    """
    previous = model.training
    model.train(False)
    try:
        yield
    finally:
        model.train(previous)

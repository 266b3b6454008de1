"""
The networks of actor and critics: SB3's MLP, or SimBa's residual network (Lee et al. 2025,
https://arxiv.org/abs/2410.09754), with SimBa's running observation normalisation.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from torch import nn

from sb3_ddpg_ext.common.validation import InvalidValueError

# The network kinds a policy can be built with (``policy_kwargs=dict(network=NAME)``).
NETWORKS = ("mlp", "simba")
# SimBa's DDPG defaults (SonyResearch/simba, configs/agent/ddpg_simba.yaml): one block of 128 for the actor, two of
# 512 for the critic, as ``net_arch`` spells them (one entry per residual block, all of one width).
SIMBA_NET_ARCH = {"pi": [128], "qf": [512, 512]}
# The inner layer of a residual block is this many times as wide as the block.
SIMBA_EXPANSION = 4


class ResidualBlock(nn.Module):
    """
    SimBa's residual feed-forward block, ``x + W_2 relu(W_1 LayerNorm(x))`` with ``W_1`` four times as wide as ``x``
    (pre-LayerNorm, as in Xiong et al. 2020): the identity path keeps a simple function reachable as the network grows.

    :param width: the block's input and output size
    """

    def __init__(self, width: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(width)
        self.inner = nn.Linear(width, SIMBA_EXPANSION * width)
        self.outer = nn.Linear(SIMBA_EXPANSION * width, width)
        for linear in (self.inner, self.outer):  # He-normal, as SimBa (its JAX version truncates the normal)
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x + self.outer(th.relu(self.inner(self.layer_norm(x))))


def simba_network(input_dim: int, output_dim: int, net_arch: list[int], squash_output: bool = False) -> nn.Sequential:
    """
    SimBa's network: a linear embedding to the blocks' width, ``len(net_arch)`` residual blocks, a final LayerNorm and
    a linear head (with tanh for an actor). Embedding and head are orthogonally initialised (gain 1), as in SimBa.

    :param input_dim: number of inputs
    :param output_dim: number of outputs
    :param net_arch: one entry per residual block, all the same width (at least one)
    :param squash_output: end with tanh
    """
    if not net_arch or len(set(net_arch)) != 1 or net_arch[0] < 1:
        raise InvalidValueError(
            f"`net_arch` of a SimBa network lists its residual blocks, one width repeated (e.g. [512, 512] for two "
            f"blocks of 512), got {net_arch}"
        )
    width = net_arch[0]
    embedding, head = nn.Linear(input_dim, width), nn.Linear(width, output_dim)
    for linear in (embedding, head):
        nn.init.orthogonal_(linear.weight, gain=1.0)
        nn.init.zeros_(linear.bias)
    layers = [embedding, *(ResidualBlock(width) for _ in net_arch), nn.LayerNorm(width), head]
    return nn.Sequential(*layers, *([nn.Tanh()] if squash_output else []))


def build_network(
    network: str,
    input_dim: int,
    output_dim: int,
    net_arch: list[int],
    activation_fn: type[nn.Module] = nn.ReLU,
    squash_output: bool = False,
    **mlp_options: Any,
) -> nn.Sequential:
    """
    An actor's or a Q-network: SB3's ``create_mlp`` (``mlp_options``: its pre/post linear modules) or
    :func:`simba_network`.
    """
    if network == "simba":
        return simba_network(input_dim, output_dim, net_arch, squash_output)
    return nn.Sequential(*create_mlp(input_dim, output_dim, net_arch, activation_fn, squash_output, **mlp_options))


class RunningObservationNorm(nn.Module):
    """
    SimBa's observation normalisation: ``(x - mean) / sqrt(var + eps)`` with the running mean and variance of the
    observations collected so far (Chan et al.'s parallel update, as SB3's ``RunningMeanStd``, from a prior count of
    ``1e-4``). The statistics change only in :meth:`update`, which the algorithm calls with each collected
    observation: a forward pass (training, evaluation, ``predict``) never changes them. They are buffers: saved with
    the policy, moved with it to a device, copied (not averaged) into target networks.

    :param size: number of (flattened) observation features
    :param eps: added to the variance
    """

    running_mean: th.Tensor
    running_var: th.Tensor
    running_count: th.Tensor

    def __init__(self, size: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", th.zeros(size))
        self.register_buffer("running_var", th.ones(size))
        self.register_buffer("running_count", th.tensor(1e-4, dtype=th.float64))

    @th.no_grad()
    def update(self, observations: th.Tensor) -> None:
        """Merge a batch of observations, shape ``(batch, size)``, into the statistics."""
        batch = observations.reshape(observations.shape[0], -1).to(th.float64)
        count = float(self.running_count)
        batch_count = batch.shape[0]
        batch_mean, batch_var = batch.mean(dim=0), batch.var(dim=0, unbiased=False)
        mean, var = self.running_mean.to(th.float64), self.running_var.to(th.float64)
        total = count + batch_count
        delta = batch_mean - mean
        self.running_mean.copy_(mean + delta * batch_count / total)
        self.running_var.copy_((var * count + batch_var * batch_count + delta.square() * count * batch_count / total) / total)
        self.running_count.fill_(total)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return (observations - self.running_mean) / th.sqrt(self.running_var + self.eps)


class NormalizedFlattenExtractor(BaseFeaturesExtractor):
    """
    Flattened observations normalised by a :class:`RunningObservationNorm` that actor, critics and their targets
    share (one set of statistics, as SimBa normalises the batch once for all networks).

    :param observation_space: a non-image ``Box``
    :param normalizer: the policy's shared normaliser
    """

    def __init__(self, observation_space: spaces.Space, normalizer: RunningObservationNorm):
        super().__init__(observation_space, get_flattened_obs_dim(observation_space))
        self.flatten = nn.Flatten()
        self.normalizer = normalizer

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.normalizer(self.flatten(observations))

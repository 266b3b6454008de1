"""SimBa's residual network (:func:`~sb3_ddpg_ext.common.networks.simba_network`) with hand-derived passes."""

from typing import NamedTuple

import torch as th
from torch import nn

from sb3_ddpg_ext.common.lean_mlp import BufferPool, LeanMLP, LeanPasses
from sb3_ddpg_ext.common.lean_norms import LeanLayerNorm
from sb3_ddpg_ext.common.networks import ResidualBlock
from sb3_ddpg_ext.common.torch_kernels import relu_backward_, tanh_backward


class _Linear(NamedTuple):
    """A linear layer's tensors (detached views of the module's) and its gradients."""

    module: nn.Linear
    weight: th.Tensor
    column_bias: th.Tensor
    weight_gradient: th.Tensor
    bias_gradient: th.Tensor


class _Block(NamedTuple):
    norm: LeanLayerNorm
    inner: _Linear
    outer: _Linear


class LeanSimba(LeanPasses):
    """
    ``head(LayerNorm(blocks(embedding(x))))`` (optionally tanh) with blocks ``x + W_2 relu(W_1 LayerNorm(x) + b_1) +
    b_2``, run without autograd, feature-major as :class:`~sb3_ddpg_ext.common.lean_mlp.LeanMLP` (the same interface:
    the fast backend runs either). The backward of a block adds the gradient through ``W_2 relu(W_1 LayerNorm(x))``
    (LayerNorm's derived in :mod:`~sb3_ddpg_ext.common.lean_norms`) to the identity path's.

    :param network: a SimBa network; see :meth:`supports`
    """

    def __init__(self, network: nn.Module, activation_pool: BufferPool | None = None, gradient_pool: BufferPool | None = None):
        if not self.supports(network):
            raise ValueError(f"LeanSimba needs a network built by simba_network, got {network}")
        layers = list(network)  # type: ignore[call-overload]
        self.squashed = type(layers[-1]) is nn.Tanh
        embedding, *blocks, final_norm, head = layers[:-1] if self.squashed else layers
        self.parameters: list[th.Tensor] = list(network.parameters())
        self.gradients: list[th.Tensor] = [th.zeros_like(tensor) for tensor in self.parameters]
        gradient_of = {id(tensor): gradient for tensor, gradient in zip(self.parameters, self.gradients, strict=True)}

        def linear(module: nn.Linear) -> _Linear:
            weight, bias = module.weight, module.bias
            return _Linear(module, weight.detach(), bias.detach().unsqueeze(1), gradient_of[id(weight)], gradient_of[id(bias)])

        def norm(module: nn.LayerNorm) -> LeanLayerNorm:
            return LeanLayerNorm(module, gradient_of[id(module.weight)], gradient_of[id(module.bias)])

        self.embedding, self.head = linear(embedding), linear(head)
        self.blocks = [_Block(norm(block.layer_norm), linear(block.inner), linear(block.outer)) for block in blocks]
        self.final_norm = norm(final_norm)
        self.linears: list[nn.Linear] = [embedding, head]  # the first's inputs, the last's outputs

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """Whether ``network`` is ``Linear, ResidualBlock..., LayerNorm, Linear[, Tanh]`` as ``simba_network`` builds it."""
        if not isinstance(network, nn.Sequential):
            return False
        layers = list(network)
        layers = layers[:-1] if layers and type(layers[-1]) is nn.Tanh else layers
        if len(layers) < 4:
            return False
        embedding, *blocks, final_norm, head = layers
        linears_ok = all(type(layer) is nn.Linear and layer.bias is not None for layer in (embedding, head))
        blocks_ok = all(
            type(block) is ResidualBlock
            and LeanLayerNorm.supports(block.layer_norm)
            and block.inner.bias is not None
            and block.outer.bias is not None
            for block in blocks
        )
        return linears_ok and blocks_ok and LeanLayerNorm.supports(final_norm)

    def forward(self, inputs: th.Tensor, training: bool = True) -> tuple[th.Tensor, list[th.Tensor]]:
        """
        :param inputs: feature-major, ``(in_features, batch)``
        :param training: unused (no layer here has modes)
        :return: the outputs, feature-major, and the activations :meth:`backward` needs: the inputs, then per block
            its LayerNorm's output and its hidden layer, then the final LayerNorm's output and the outputs
        """
        x = th.addmm(self.embedding.column_bias, self.embedding.weight, inputs)
        activations = [inputs]
        for block in self.blocks:
            normalized = block.norm.forward(x, out=th.empty_like(x))
            hidden = th.addmm(block.inner.column_bias, block.inner.weight, normalized).relu_()
            x = th.addmm(x, block.outer.weight, hidden).add_(block.outer.column_bias)  # x + W_2 h + b_2
            activations += [normalized, hidden]
        final = self.final_norm.forward(x, out=th.empty_like(x))
        outputs = th.addmm(self.head.column_bias, self.head.weight, final)
        if self.squashed:
            outputs.tanh_()
        return outputs, [*activations, final, outputs]

    def _backward(
        self, activations: list[th.Tensor], gradient: th.Tensor, input_rows: slice | None, parameter_gradients: bool
    ) -> th.Tensor | None:
        gradient = tanh_backward(gradient, activations[-1]) if self.squashed else gradient
        if parameter_gradients:
            self._parameter_gradients(self.head, activations[-2], gradient)
        gradient = self.final_norm.backward(th.mm(self.head.weight.t(), gradient), parameter_gradients)
        for index in range(len(self.blocks) - 1, -1, -1):
            block, normalized, hidden = self.blocks[index], activations[1 + 2 * index], activations[2 + 2 * index]
            if parameter_gradients:
                self._parameter_gradients(block.outer, hidden, gradient)
            hidden_gradient = th.mm(block.outer.weight.t(), gradient)
            relu_backward_(hidden_gradient, hidden)  # its last use
            if parameter_gradients:
                self._parameter_gradients(block.inner, normalized, hidden_gradient)
            normalized_gradient = th.mm(block.inner.weight.t(), hidden_gradient)
            gradient = gradient + block.norm.backward(normalized_gradient, parameter_gradients)  # and the identity's
        if parameter_gradients:
            self._parameter_gradients(self.embedding, activations[0], gradient)
        return None if input_rows is None else th.mm(self.embedding.weight.t()[input_rows], gradient)

    @staticmethod
    def _parameter_gradients(layer: _Linear, layer_input: th.Tensor, gradient: th.Tensor) -> None:
        th.mm(gradient, layer_input.t(), out=layer.weight_gradient)
        th.sum(gradient, dim=1, out=layer.bias_gradient)


LeanNetwork = LeanMLP | LeanSimba


def lean_network(
    network: nn.Module, activation_pool: BufferPool | None = None, gradient_pool: BufferPool | None = None
) -> LeanNetwork:
    """The hand-derived passes of ``network``: :class:`LeanSimba` for SimBa's, else :class:`LeanMLP`."""
    if LeanSimba.supports(network):
        return LeanSimba(network, activation_pool, gradient_pool)
    return LeanMLP(network, activation_pool, gradient_pool)


def supports(network: nn.Module) -> bool:
    """Whether :func:`lean_network` can run ``network``."""
    return LeanSimba.supports(network) or LeanMLP.supports(network)

"""Forward and backward passes of a plain ReLU MLP without autograd, for the hot path of the update."""

from typing import NamedTuple

import torch as th
from torch import nn

from sb3_ddpg_ext.common.torch_kernels import relu_backward_, tanh_backward

# Hidden-layer buffers by (layer index, features, batch size); the objects given the same pool share them.
BufferPool = dict[tuple[int, int, int], th.Tensor]


class _Layer(NamedTuple):
    """One linear layer's tensors, resolved once (detached views: in-place updates of the parameters show through)."""

    weight: th.Tensor
    transposed_weight: th.Tensor
    column_bias: th.Tensor
    weight_gradient: th.Tensor
    bias_gradient: th.Tensor
    narrow_input: bool


class _Norm(NamedTuple):
    """A LayerNorm after a hidden linear layer: its affine parameters as columns, their gradients, its epsilon."""

    column_weight: th.Tensor
    column_bias: th.Tensor
    weight_gradient: th.Tensor
    bias_gradient: th.Tensor
    eps: float


class LeanMLP:
    """
    The layers of an ``nn.Sequential`` built by SB3's ``create_mlp`` with ReLU activations (``Linear, ReLU,
    ..., Linear``, optionally ending in ``Tanh``; with ``post_linear_modules=[nn.LayerNorm]``, ``Linear, LayerNorm,
    ReLU, ...``), run with hand-derived gradients instead of autograd.

    The same maths as autograd (``addmm`` forward; ``grad_W = g^T x``, ``grad_b = sum(g)``, ``grad_x = g W``,
    ReLU's ``g [y > 0]``, tanh's ``g (1 - y^2)``, LayerNorm's ``(g' - mean(g') - x^ mean(g' x^)) / sigma`` with
    ``g' = gamma g`` over the features) without building a graph, in place where autograd would allocate,
    and into preallocated tensors: the gradients, and the hidden activations and their gradients, which every pass
    with the same batch size reuses. Activations are kept feature-major (``features x batch``), and so are inputs and
    outputs, so that networks chained by hand (actor into critic) need no transposed copies between them.

    Because of that reuse, a pass overwrites the activations of the previous pass of the same object (and of the
    objects sharing its ``activation_pool``): call :meth:`backward` before the next :meth:`forward`; :meth:`backward`
    may overwrite the hidden activations (:func:`~sb3_ddpg_ext.common.torch_kernels.relu_backward_`). The parameters
    are the module's own tensors, so optimizer steps and target-network averaging done in place are seen here;
    rebuild the object if the module's parameters are replaced.

    A smaller working set makes the products faster (fewer cache misses), hence the pools: the hidden-layer gradients
    live only inside one :meth:`backward` call, so any objects may share a ``gradient_pool``; an ``activation_pool``
    may be shared by objects whose passes run one after another with no :meth:`backward` (e.g. the target networks).

    :param network: the MLP; see :meth:`supports`
    :param activation_pool: where the hidden activations are kept (default: the object's own)
    :param gradient_pool: where the hidden-layer gradients are kept during :meth:`backward` (default: its own)
    """

    def __init__(self, network: nn.Module, activation_pool: BufferPool | None = None, gradient_pool: BufferPool | None = None):
        if not self.supports(network):
            raise ValueError(f"LeanMLP needs Linear/ReLU layers ending in Linear (or Linear, Tanh), got {network}")
        layers = list(network)  # type: ignore[call-overload]
        self.linears: list[nn.Linear] = [layer for layer in layers if isinstance(layer, nn.Linear)]
        self.squashed = isinstance(layers[-1], nn.Tanh)
        # The module's parameters in its own order (the optimizers' order): each Linear's, then its LayerNorm's.
        self.parameters: list[th.Tensor] = [tensor for layer in layers for tensor in layer.parameters()]
        self.gradients: list[th.Tensor] = [th.zeros_like(tensor) for tensor in self.parameters]
        gradient_of = {id(tensor): gradient for tensor, gradient in zip(self.parameters, self.gradients, strict=True)}
        self._layers = [
            _Layer(
                weight=layer.weight.detach(),
                transposed_weight=layer.weight.detach().t(),
                column_bias=layer.bias.detach().unsqueeze(1),
                weight_gradient=gradient_of[id(layer.weight)],
                bias_gradient=gradient_of[id(layer.bias)],
                # A narrow input (observations): (x g^T)^T is faster than g x^T for a handful of columns.
                narrow_input=layer.in_features < layer.out_features,
            )
            for layer in self.linears
        ]
        # The LayerNorm after each hidden linear layer, or None.
        self._norms: list[_Norm | None] = []
        for index, layer in enumerate(layers):
            if isinstance(layer, nn.Linear) and len(self._norms) < len(self.linears) - 1:
                norm = layers[index + 1]
                self._norms.append(
                    None
                    if not isinstance(norm, nn.LayerNorm)
                    else _Norm(
                        column_weight=norm.weight.detach().unsqueeze(1),
                        column_bias=norm.bias.detach().unsqueeze(1),
                        weight_gradient=gradient_of[id(norm.weight)].unsqueeze(1),
                        bias_gradient=gradient_of[id(norm.bias)].unsqueeze(1),
                        eps=norm.eps,
                    )
                )
        # What each LayerNorm's backward needs from the last forward pass: the normalised values and 1 / sigma.
        self._normalized: list[tuple[th.Tensor, th.Tensor] | None] = [None] * len(self._norms)
        self._activation_pool: BufferPool = {} if activation_pool is None else activation_pool
        self._gradient_pool: BufferPool = {} if gradient_pool is None else gradient_pool
        self._batch_size = 0
        self._hidden: list[th.Tensor] = []
        self._hidden_gradients: list[th.Tensor] = []
        self._hidden_transposed: list[th.Tensor] = []

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """Whether ``network`` is a Sequential of ``Linear`` layers with ``ReLU`` between them (and biases), ending
        in ``Linear`` or ``Linear, Tanh``: the networks SB3 and DDPGExt build with the default activation."""
        if not isinstance(network, nn.Sequential) or len(network) == 0:
            return False
        layers = list(network)
        if type(layers[-1]) is nn.Tanh:
            layers = layers[:-1]
        # LayerNorms with their affine parameters, over the last dimension, may follow the hidden linear layers.
        norms = [layer for layer in layers if type(layer) is nn.LayerNorm]
        plain = [layer for layer in layers if type(layer) is not nn.LayerNorm]
        expected = [nn.Linear if index % 2 == 0 else nn.ReLU for index in range(len(plain))]
        after_linear = all(type(layers[layers.index(norm) - 1]) is nn.Linear for norm in norms)
        return (
            len(plain) % 2 == 1
            and [type(layer) for layer in plain] == expected
            and all(layer.bias is not None for layer in plain if isinstance(layer, nn.Linear))
            and after_linear
            and type(layers[-1]) is nn.Linear
            and all(norm.elementwise_affine and norm.bias is not None and len(norm.normalized_shape) == 1 for norm in norms)
        )

    def _allocate(self, batch_size: int) -> None:
        # Normal tensors even when the first pass runs in inference mode: they outlive it.
        with th.inference_mode(False):
            self._hidden = self._buffers(self._activation_pool, batch_size)
            self._hidden_gradients = self._buffers(self._gradient_pool, batch_size)
            self._hidden_transposed = [hidden.t() for hidden in self._hidden]  # resolved once: a view costs a dispatch
        self._batch_size = batch_size

    def _buffers(self, pool: BufferPool, batch_size: int) -> list[th.Tensor]:
        """One ``(features, batch_size)`` tensor per hidden layer, taken from ``pool`` or added to it."""
        new_empty = self._layers[0].weight.new_empty
        buffers = []
        for index, layer in enumerate(self.linears[:-1]):
            key = (index, layer.out_features, batch_size)
            if key not in pool:
                pool[key] = new_empty(layer.out_features, batch_size)
            buffers.append(pool[key])
        return buffers

    def forward(self, inputs: th.Tensor) -> tuple[th.Tensor, list[th.Tensor]]:
        """
        :param inputs: feature-major, shape ``(in_features, batch)``; give a contiguous tensor when a :meth:`backward`
            with parameter gradients follows (the first layer's weight gradient is then faster; the result is
            the same either way), a transposed view is fine otherwise
        :return: the outputs, feature-major ``(out_features, batch)``, and the activations that :meth:`backward`
            needs (valid until the next forward pass)
        """
        if inputs.shape[1] != self._batch_size:
            self._allocate(inputs.shape[1])
        hidden = inputs
        activations = [hidden]
        for index, (layer, buffer) in enumerate(zip(self._layers, self._hidden, strict=False)):  # all but the last
            hidden = th.addmm(layer.column_bias, layer.weight, hidden, out=buffer)
            norm = self._norms[index]
            if norm is not None:  # written back into the buffer: the backward reads the hidden layers from there
                hidden = self._layer_norm(index, norm, hidden, out=buffer)
            hidden = hidden.relu_()
            activations.append(hidden)
        last = self._layers[-1]
        outputs = th.addmm(last.column_bias, last.weight, hidden)
        if self.squashed:
            outputs.tanh_()
        activations.append(outputs)
        return outputs, activations

    def backward(
        self,
        activations: list[th.Tensor],
        output_gradients: th.Tensor,
        input_rows: slice | None = None,
        parameter_gradients: bool = True,
    ) -> th.Tensor | None:
        """
        Write the gradients of the parameters into :attr:`gradients` (overwritten, not accumulated).

        :param activations: from :meth:`forward`
        :param output_gradients: gradient of the loss with respect to the outputs, feature-major
            ``(out_features, batch)``
        :param input_rows: also return the gradient with respect to these input features
        :param parameter_gradients: False to only propagate the gradient to the inputs (one product per layer
            instead of two)
        :return: that input gradient, feature-major ``(n_features, batch)``, or None
        """
        gradient = output_gradients
        if self.squashed:
            gradient = tanh_backward(gradient, activations[-1])
        for index in range(len(self._layers) - 1, 0, -1):
            layer, layer_input = self._layers[index], activations[index]
            if parameter_gradients:
                self._parameter_gradients(layer, layer_input, gradient, self._hidden_transposed[index - 1])
            gradient = th.mm(layer.transposed_weight, gradient, out=self._hidden_gradients[index - 1])
            relu_backward_(gradient, layer_input)  # its last use: the public path overwrites it
            norm = self._norms[index - 1]
            if norm is not None:
                gradient = self._layer_norm_backward(index - 1, norm, gradient, parameter_gradients)
        first = self._layers[0]
        if parameter_gradients:
            self._parameter_gradients(first, activations[0], gradient)
        if input_rows is None:
            return None
        return th.mm(first.transposed_weight[input_rows], gradient)

    def _layer_norm(self, index: int, norm: _Norm, hidden: th.Tensor, out: th.Tensor) -> th.Tensor:
        """LayerNorm over the features (dim 0 here), affine, into ``out``; keeps what its backward needs."""
        centered = hidden - hidden.mean(dim=0, keepdim=True)
        inverse_std = centered.square().mean(dim=0, keepdim=True).add_(norm.eps).rsqrt_()
        normalized = centered.mul_(inverse_std)
        self._normalized[index] = (normalized, inverse_std)
        return th.addcmul(norm.column_bias, normalized, norm.column_weight, out=out)

    def _layer_norm_backward(self, index: int, norm: _Norm, gradient: th.Tensor, parameter_gradients: bool) -> th.Tensor:
        saved = self._normalized[index]
        assert saved is not None, "backward() needs the forward pass of the same object before it"
        normalized, inverse_std = saved
        if parameter_gradients:
            th.sum(gradient * normalized, dim=1, keepdim=True, out=norm.weight_gradient)
            th.sum(gradient, dim=1, keepdim=True, out=norm.bias_gradient)
        scaled = gradient * norm.column_weight
        projection = (scaled * normalized).mean(dim=0, keepdim=True)
        return (scaled - scaled.mean(dim=0, keepdim=True) - normalized * projection).mul_(inverse_std)

    @staticmethod
    def _parameter_gradients(
        layer: _Layer, layer_input: th.Tensor, gradient: th.Tensor, transposed_input: th.Tensor | None = None
    ) -> None:
        if layer.narrow_input:
            layer.weight_gradient.copy_(th.mm(layer_input, gradient.t()).t())
        else:
            th.mm(gradient, layer_input.t() if transposed_input is None else transposed_input, out=layer.weight_gradient)
        th.sum(gradient, dim=1, out=layer.bias_gradient)

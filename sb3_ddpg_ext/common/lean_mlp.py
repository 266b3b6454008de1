"""Forward and backward passes of a ReLU or ELU MLP without autograd, for the hot path of the update."""

from collections.abc import Callable
from typing import NamedTuple

import torch as th
from torch import nn

from sb3_ddpg_ext.common.lean_norms import LeanBatchRenorm, LeanLayerNorm
from sb3_ddpg_ext.common.torch_kernels import relu_backward_, tanh_backward

# Hidden-layer buffers by (kind, layer index, features, batch size); the objects given the same pool share them.
BufferPool = dict[tuple[str, int, int, int], th.Tensor]


class _Layer(NamedTuple):
    """One linear layer's tensors, resolved once (detached views: in-place updates of the parameters show through)."""

    weight: th.Tensor
    transposed_weight: th.Tensor
    column_bias: th.Tensor
    weight_gradient: th.Tensor
    bias_gradient: th.Tensor
    narrow_input: bool


class _Unit(NamedTuple):
    """A linear layer with the normalisations around it (BatchRenorm before it, LayerNorm after it) and its
    activation (hidden layers only): ReLU, or ELU with ``alpha = 1``."""

    renorm: LeanBatchRenorm | None
    layer: _Layer
    norm: LeanLayerNorm | None
    elu: bool


_Parsed = tuple[nn.Module | None, nn.Linear, nn.Module | None, nn.Module | None]


def _is_activation(layer: nn.Module) -> bool:
    return type(layer) is nn.ReLU or (type(layer) is nn.ELU and layer.alpha == 1.0)


def _activation_backward_(gradient: th.Tensor, output: th.Tensor, elu: bool) -> None:
    """
    The activation's backward in place, from its output: ReLU's ``g [y > 0]``; ELU's (``alpha = 1``) ``g`` where
    ``y > 0``, else ``g e^x = g (y + 1)``: both are ``g (min(y, 0) + 1)``. Both may overwrite ``output``: call it on
    its last use.
    """
    if elu:
        gradient.mul_(output.clamp_(max=0.0).add_(1.0))
    else:
        relu_backward_(gradient, output)


def _parse(network: nn.Module) -> tuple[list[_Parsed], bool] | None:
    """
    ``(BatchRenorm?, Linear, LayerNorm?, activation)`` per linear layer and whether a Tanh ends the network, for a
    Sequential of ``[BatchRenorm] Linear [LayerNorm] ReLU|ELU ... [BatchRenorm] Linear [Tanh]``; None for any other.
    """
    if not isinstance(network, nn.Sequential) or len(network) == 0:
        return None
    layers = list(network)
    squashed = type(layers[-1]) is nn.Tanh
    layers = layers[:-1] if squashed else layers
    units: list[_Parsed] = []
    position = 0

    def take(accepts: Callable[[nn.Module], bool]) -> nn.Module | None:
        nonlocal position
        if position < len(layers) and accepts(layers[position]):
            position += 1
            return layers[position - 1]
        return None

    while position < len(layers):
        renorm = take(LeanBatchRenorm.supports)
        linear = take(lambda layer: type(layer) is nn.Linear and layer.bias is not None)
        if linear is None:
            return None
        if position == len(layers):
            units.append((renorm, linear, None, None))  # type: ignore[arg-type]
            return units, squashed
        norm = take(LeanLayerNorm.supports)
        activation = take(_is_activation)
        if activation is None:
            return None
        units.append((renorm, linear, norm, activation))  # type: ignore[arg-type]
    return None  # ends in an activation


class LeanPasses:
    """
    The interface of a network's hand-derived passes (:class:`LeanMLP`, and SimBa's
    :class:`~sb3_ddpg_ext.common.lean_simba.LeanSimba`): feature-major inputs and outputs, the parameters' gradients
    written into tensors of its own, which the optimizers step on.
    """

    parameters: list[th.Tensor]  # the module's parameters, in its own order
    gradients: list[th.Tensor]  # theirs, in the same order
    linears: list[nn.Linear]  # the first reads the inputs, the last writes the outputs

    def forward(self, inputs: th.Tensor, training: bool = True) -> tuple[th.Tensor, list[th.Tensor]]:
        """The outputs for feature-major ``inputs`` and the activations :meth:`backward` needs."""
        raise NotImplementedError

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
        return self._backward(activations, output_gradients, input_rows, parameter_gradients)

    def _backward(
        self, activations: list[th.Tensor], gradient: th.Tensor, input_rows: slice | None, parameter_gradients: bool
    ) -> th.Tensor | None:
        raise NotImplementedError


class LeanMLP(LeanPasses):
    """
    The layers of an ``nn.Sequential`` built by SB3's ``create_mlp`` with ReLU or ELU activations (``Linear, ReLU,
    ..., Linear``, optionally ending in ``Tanh``), with ``post_linear_modules=[nn.LayerNorm]`` (``Linear, LayerNorm,
    ReLU, ...``) and/or ``pre_linear_modules=[BatchRenorm1d]`` (CrossQ: ``BatchRenorm, Linear, ReLU, ...,
    BatchRenorm, Linear``), run with hand-derived gradients instead of autograd.

    The same maths as autograd (``addmm`` forward; ``grad_W = g^T x``, ``grad_b = sum(g)``, ``grad_x = g W``,
    ReLU's ``g [y > 0]``, ELU's ``g (min(y, 0) + 1)``, tanh's ``g (1 - y^2)``, the normalisations' in
    :mod:`~sb3_ddpg_ext.common.lean_norms`) without building a graph, in place where autograd would allocate, and
    into preallocated tensors: the gradients, and the hidden activations and their gradients, which every pass with
    the same batch size reuses. Activations are kept feature-major (``features x batch``), and so are inputs and
    outputs, so that networks chained by hand (actor into critic) need no transposed copies between them.
    BatchRenorm layers run in the mode the caller declares (:meth:`forward`'s ``training``), not the one the modules
    are in.

    Because of that reuse, a pass overwrites the activations of the previous pass of the same object (and of the
    objects sharing its ``activation_pool``): call :meth:`backward` before the next :meth:`forward`; :meth:`backward`
    may overwrite the hidden activations (:func:`~sb3_ddpg_ext.common.torch_kernels.relu_backward_`). The parameters
    and running statistics are the module's own tensors, so optimizer steps and target-network averaging done in place
    are seen here, and training passes move the modules' statistics; rebuild the object if the module's tensors are
    replaced.

    A smaller working set makes the products faster (fewer cache misses), hence the pools: the hidden-layer gradients
    live only inside one :meth:`backward` call, so any objects may share a ``gradient_pool``; an ``activation_pool``
    may be shared by objects whose passes run one after another with no :meth:`backward` (e.g. the target networks).

    :param network: the MLP; see :meth:`supports`
    :param activation_pool: where the hidden activations are kept (default: the object's own)
    :param gradient_pool: where the hidden-layer gradients are kept during :meth:`backward` (default: its own)
    """

    def __init__(self, network: nn.Module, activation_pool: BufferPool | None = None, gradient_pool: BufferPool | None = None):
        parsed = _parse(network)
        if parsed is None:
            raise ValueError(
                f"LeanMLP needs Linear/ReLU (or ELU) layers (BatchRenorm before, LayerNorm after a linear layer "
                f"allowed) ending in Linear (or Linear, Tanh), got {network}"
            )
        modules, self.squashed = parsed
        self.linears: list[nn.Linear] = [linear for _, linear, _, _ in modules]
        # The module's parameters in its own order (the optimizers' order).
        self.parameters: list[th.Tensor] = list(network.parameters())
        self.gradients: list[th.Tensor] = [th.zeros_like(tensor) for tensor in self.parameters]
        gradient_of = {id(tensor): gradient for tensor, gradient in zip(self.parameters, self.gradients, strict=True)}

        def gradients(module: nn.Module, *names: str) -> list[th.Tensor]:
            return [gradient_of[id(getattr(module, name))] for name in names]

        self._units = [
            _Unit(
                renorm=None if renorm is None else LeanBatchRenorm(renorm, *gradients(renorm, "scale", "bias")),  # type: ignore[arg-type]
                layer=_Layer(
                    weight=linear.weight.detach(),
                    transposed_weight=linear.weight.detach().t(),
                    column_bias=linear.bias.detach().unsqueeze(1),
                    weight_gradient=gradient_of[id(linear.weight)],
                    bias_gradient=gradient_of[id(linear.bias)],
                    # A narrow input (observations): (x g^T)^T is faster than g x^T for a handful of columns.
                    narrow_input=linear.in_features < linear.out_features,
                ),
                norm=None if norm is None else LeanLayerNorm(norm, *gradients(norm, "weight", "bias")),  # type: ignore[arg-type]
                elu=type(activation) is nn.ELU,
            )
            for renorm, linear, norm, activation in modules
        ]
        self._activation_pool: BufferPool = {} if activation_pool is None else activation_pool
        self._gradient_pool: BufferPool = {} if gradient_pool is None else gradient_pool
        self._batch_size = 0
        self._hidden: list[th.Tensor] = []
        self._hidden_gradients: list[th.Tensor] = []
        # Each linear layer's input in the last pass (BatchRenorm's output where there is one), and its transpose.
        self._renormed: list[th.Tensor | None] = []
        self._linear_inputs: list[th.Tensor] = []
        self._transposed_inputs: list[th.Tensor | None] = []

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """Whether ``network`` is a Sequential of ``Linear`` layers (with biases) and ``ReLU`` (or ``ELU`` with
        ``alpha=1``) between them, ending
        in ``Linear`` or ``Linear, Tanh``, each linear layer optionally after a BatchRenorm (sb3-contrib's or
        DDPGExt's, affine) and each hidden one optionally followed by a LayerNorm (affine, over the last dimension)."""
        return _parse(network) is not None

    def _allocate(self, batch_size: int) -> None:
        # Normal tensors even when the first pass runs in inference mode: they outlive it.
        with th.inference_mode(False):
            hidden_sizes = [layer.out_features for layer in self.linears[:-1]]
            self._hidden = self._buffers(self._activation_pool, "hidden", hidden_sizes, batch_size)
            self._hidden_gradients = self._buffers(self._gradient_pool, "gradient", hidden_sizes, batch_size)
            # BatchRenorm's outputs, the inputs of the linear layers after one (None for the others).
            sizes = [unit.layer.weight.shape[1] for unit in self._units if unit.renorm is not None]
            renormed = iter(self._buffers(self._activation_pool, "renormed", sizes, batch_size))
            self._renormed = [None if unit.renorm is None else next(renormed) for unit in self._units]
            new_empty = self._units[0].layer.weight.new_empty
            # Resolved once (a view costs a dispatch); the first layer's plain input differs at every call.
            plain_inputs = [None, *self._hidden]  # the first layer's is the pass's input
            pairs = zip(self._renormed, plain_inputs, strict=False)
            inputs = [plain if own is None else own for own, plain in pairs]
            self._transposed_inputs = [None if tensor is None else tensor.t() for tensor in inputs]
            self._linear_inputs = [new_empty(0) if tensor is None else tensor for tensor in inputs]
        self._batch_size = batch_size

    def _buffers(self, pool: BufferPool, kind: str, sizes: list[int], batch_size: int) -> list[th.Tensor]:
        """One ``(size, batch_size)`` tensor per entry of ``sizes``, taken from ``pool`` or added to it."""
        new_empty = self._units[0].layer.weight.new_empty
        buffers = []
        for index, size in enumerate(sizes):
            key = (kind, index, size, batch_size)
            if key not in pool:
                pool[key] = new_empty(size, batch_size)
            buffers.append(pool[key])
        return buffers

    def forward(self, inputs: th.Tensor, training: bool = True) -> tuple[th.Tensor, list[th.Tensor]]:
        """
        :param inputs: feature-major, shape ``(in_features, batch)``; give a contiguous tensor when a :meth:`backward`
            with parameter gradients follows (the first layer's weight gradient is then faster; the result is
            the same either way), a transposed view is fine otherwise
        :param training: BatchRenorm's mode: batch statistics (and updates of the running ones) or the running ones
        :return: the outputs, feature-major ``(out_features, batch)``, and the activations that :meth:`backward`
            needs (valid until the next forward pass)
        """
        if inputs.shape[1] != self._batch_size:
            self._allocate(inputs.shape[1])
        hidden = inputs
        activations = [hidden]
        last = len(self._units) - 1
        for index, unit in enumerate(self._units):
            linear_input = hidden
            if unit.renorm is not None:
                linear_input = unit.renorm.forward(hidden, self._renormed[index], training)  # type: ignore[arg-type]
            elif index == 0:
                self._linear_inputs[0] = hidden
            layer = unit.layer
            if index == last:
                outputs = th.addmm(layer.column_bias, layer.weight, linear_input)
                if self.squashed:
                    outputs.tanh_()
                activations.append(outputs)
                return outputs, activations
            buffer = self._hidden[index]
            hidden = th.addmm(layer.column_bias, layer.weight, linear_input, out=buffer)
            if unit.norm is not None:  # written back into the buffer: the backward reads the hidden layers from there
                hidden = unit.norm.forward(hidden, out=buffer)
            # ELU out of place, then copied back: torch's in-place ELU kernel is the slower one on CPU.
            hidden = hidden.copy_(th.nn.functional.elu(hidden)) if unit.elu else hidden.relu_()
            activations.append(hidden)
        raise AssertionError("unreachable: the last unit returns")

    def _backward(
        self, activations: list[th.Tensor], gradient: th.Tensor, input_rows: slice | None, parameter_gradients: bool
    ) -> th.Tensor | None:
        if self.squashed:
            gradient = tanh_backward(gradient, activations[-1])
        for index in range(len(self._units) - 1, 0, -1):
            unit = self._units[index]
            if parameter_gradients:
                self._parameter_gradients(unit.layer, self._linear_inputs[index], gradient, self._transposed_inputs[index])
            gradient = th.mm(unit.layer.transposed_weight, gradient, out=self._hidden_gradients[index - 1])
            if unit.renorm is not None:
                renormed_gradient = unit.renorm.backward(gradient, parameter_gradients)
                assert renormed_gradient is not None
                gradient = renormed_gradient
            _activation_backward_(gradient, activations[index], self._units[index - 1].elu)  # its last use
            norm = self._units[index - 1].norm
            if norm is not None:
                gradient = norm.backward(gradient, parameter_gradients)
        first = self._units[0]
        if parameter_gradients:
            self._parameter_gradients(first.layer, self._linear_inputs[0], gradient, self._transposed_inputs[0])
        if first.renorm is None:
            return None if input_rows is None else th.mm(first.layer.transposed_weight[input_rows], gradient)
        if not parameter_gradients and input_rows is None:
            return None
        # BatchRenorm works feature by feature, but its parameters need every feature's gradient.
        wanted = input_rows is not None
        input_gradients = first.renorm.backward(th.mm(first.layer.transposed_weight, gradient), parameter_gradients, wanted)
        return None if input_gradients is None or input_rows is None else input_gradients[input_rows]

    @staticmethod
    def _parameter_gradients(
        layer: _Layer, layer_input: th.Tensor, gradient: th.Tensor, transposed_input: th.Tensor | None = None
    ) -> None:
        if layer.narrow_input:
            layer.weight_gradient.copy_(th.mm(layer_input, gradient.t()).t())
        else:
            th.mm(gradient, layer_input.t() if transposed_input is None else transposed_input, out=layer.weight_gradient)
        th.sum(gradient, dim=1, out=layer.bias_gradient)

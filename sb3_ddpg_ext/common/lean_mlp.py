"""Forward and backward passes of a plain ReLU MLP without autograd, for the hot path of the update."""

import torch as th
from torch import nn


class LeanMLP:
    """
    The layers of an ``nn.Sequential`` built by SB3's ``create_mlp`` with ReLU activations (``Linear, ReLU,
    ..., Linear``, optionally ending in ``Tanh``), run with hand-derived gradients instead of autograd.

    The same arithmetic as autograd (``addmm`` forward; ``grad_W = g^T x``, ``grad_b = sum(g)``,
    ``grad_x = g W`` and ReLU's ``threshold_backward``; tanh's ``g (1 - y^2)``) without building a graph,
    in place where autograd would allocate, and into preallocated gradient tensors. Activations are kept
    feature-major (``features x batch``): on this CPU the forward product ``W x^T`` is about 8% faster
    than ``x W^T`` for a 400-300 layer and the backward products are not slower.

    The parameters are the module's own tensors, so optimizer steps and target-network averaging done in
    place are seen here; rebuild the object if the module's parameters are replaced.

    :param network: the MLP; see :meth:`supports`
    """

    def __init__(self, network: nn.Module):
        if not self.supports(network):
            raise ValueError(f"LeanMLP needs Linear/ReLU layers ending in Linear (or Linear, Tanh), got {network}")
        layers = list(network)  # type: ignore[call-overload]
        self.linears: list[nn.Linear] = [layer for layer in layers if isinstance(layer, nn.Linear)]
        self.squashed = isinstance(layers[-1], nn.Tanh)
        self.parameters: list[th.Tensor] = [tensor for layer in self.linears for tensor in (layer.weight, layer.bias)]
        self.gradients: list[th.Tensor] = [th.zeros_like(tensor) for tensor in self.parameters]
        # Bias columns broadcast over the batch in the feature-major layout (views: they follow in-place updates).
        self._column_biases = [layer.bias.detach().unsqueeze(1) for layer in self.linears]
        # Detached views: no autograd graph is recorded whatever the grad mode, and in-place updates show through.
        self._weights = [layer.weight.detach() for layer in self.linears]
        self._transposed_weights = [weight.t() for weight in self._weights]
        # Hidden activations and their gradients, reused by every pass of the same batch size (see forward).
        self._workspaces: dict[int, tuple[list[th.Tensor], list[th.Tensor]]] = {}

    def _workspace(self, batch_size: int) -> tuple[list[th.Tensor], list[th.Tensor]]:
        if batch_size not in self._workspaces:
            weight = self._weights[0]
            hidden = [weight.new_empty(layer.out_features, batch_size) for layer in self.linears[:-1]]
            gradients = [weight.new_empty(layer.out_features, batch_size) for layer in self.linears[:-1]]
            self._workspaces[batch_size] = hidden, gradients
        return self._workspaces[batch_size]

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """Whether ``network`` is a Sequential of ``Linear`` layers with ``ReLU`` between them (and biases), ending
        in ``Linear`` or ``Linear, Tanh``: the networks SB3 and DDPGExt build with the default activation."""
        if not isinstance(network, nn.Sequential) or len(network) == 0:
            return False
        layers = list(network)
        if type(layers[-1]) is nn.Tanh:
            layers = layers[:-1]
        expected = [nn.Linear if index % 2 == 0 else nn.ReLU for index in range(len(layers))]
        return (
            len(layers) % 2 == 1
            and [type(layer) for layer in layers] == expected
            and all(layer.bias is not None for layer in layers if isinstance(layer, nn.Linear))
        )

    def forward(self, inputs: th.Tensor, keep_activations: bool = False) -> tuple[th.Tensor, list[th.Tensor]]:
        """
        :param inputs: shape ``(batch, in_features)``
        :param keep_activations: keep what :meth:`backward` needs (otherwise the returned list is empty)
        :return: the outputs, shape ``(batch, out_features)`` (a transposed view), and the activations
        """
        # Contiguous: the first layer's weight gradient x g^T is 3x faster than with a transposed view of x.
        hidden = inputs.t().contiguous()
        activations = [hidden]
        workspace, _ = self._workspace(hidden.shape[1])
        last = len(self.linears) - 1
        for index, (weight, bias) in enumerate(zip(self._weights, self._column_biases, strict=True)):
            if index < last:
                hidden = th.addmm(bias, weight, hidden, out=workspace[index]).relu_()
            else:
                hidden = th.addmm(bias, weight, hidden)
                if self.squashed:
                    hidden.tanh_()
            if keep_activations:
                activations.append(hidden)
        return hidden.t(), activations if keep_activations else []

    def backward(
        self,
        activations: list[th.Tensor],
        output_gradients: th.Tensor,
        input_columns: slice | None = None,
        parameter_gradients: bool = True,
    ) -> th.Tensor | None:
        """
        Write the gradients of the parameters into :attr:`gradients` (overwritten, not accumulated).

        :param activations: from :meth:`forward` with ``keep_activations=True``
        :param output_gradients: gradient of the loss with respect to the outputs, shape ``(batch, out_features)``
        :param input_columns: also return the gradient with respect to these input columns
        :param parameter_gradients: False to only propagate the gradient to the inputs (one product per layer
            instead of two)
        :return: that input gradient, shape ``(batch, n_columns)``, or None
        """
        gradient = output_gradients.t()
        _, workspace = self._workspace(gradient.shape[1])
        if self.squashed:
            outputs = activations[-1]
            gradient = gradient * (1.0 - outputs * outputs)
        for index in range(len(self.linears) - 1, -1, -1):
            layer_input = activations[index]
            if parameter_gradients:
                self._parameter_gradients(index, layer_input, gradient)
            if index > 0:
                gradient = th.mm(self._transposed_weights[index], gradient, out=workspace[index - 1])
                th.ops.aten.threshold_backward.grad_input(gradient, layer_input, 0, grad_input=gradient)
            elif input_columns is not None:
                return th.mm(self._transposed_weights[0][input_columns], gradient).t()
        return None

    def _parameter_gradients(self, index: int, layer_input: th.Tensor, gradient: th.Tensor) -> None:
        weight_gradient, bias_gradient = self.gradients[2 * index], self.gradients[2 * index + 1]
        if weight_gradient.shape[1] < weight_gradient.shape[0]:
            # A narrow input (observations): (x g^T)^T is 4-5x faster than g x^T for a handful of columns.
            weight_gradient.copy_(th.mm(layer_input, gradient.t()).t())
        else:
            th.mm(gradient, layer_input.t(), out=weight_gradient)
        th.sum(gradient, dim=1, out=bias_gradient)

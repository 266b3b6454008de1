"""
Normalisation layers' forward and backward passes without autograd, feature-major (``features x batch``), for
:class:`~sb3_ddpg_ext.common.lean_mlp.LeanMLP`: LayerNorm (over the features) and BatchRenorm (over the batch).

Each object holds detached views of its module's parameters and statistics (in-place updates show through both
ways) and the gradient tensors the optimizer steps on; a :meth:`forward` keeps what the next :meth:`backward` needs.
Per-feature scalars are ``(features, 1)`` columns, and every broadcast product takes one of them at a time: an
elementwise kernel given two broadcast columns is several times slower on CPU than two kernels given one each.
"""

from typing import NamedTuple

import numpy as np
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm as ContribBatchRenorm
from torch import nn

from sb3_ddpg_ext.common import renorm_kernels


def _column(tensor: th.Tensor) -> th.Tensor:
    """A ``(features,)`` tensor as a detached ``(features, 1)`` view (same storage)."""
    return tensor.detach().unsqueeze(1)


class _CompiledArrays(NamedTuple):
    """A BatchRenorm layer's tensors as the compiled passes take them: NumPy views of the module's parameters,
    statistics, step count and the gradients, a scratch row (for passes that want no parameter gradients) and the
    evaluation pass's per-feature scale, with its ``(features, 1)`` tensor view for the backward pass."""

    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    steps: np.ndarray
    weight_gradient: np.ndarray
    bias_gradient: np.ndarray
    scratch: np.ndarray
    scale: np.ndarray
    scale_column: th.Tensor


class LeanLayerNorm:
    """
    ``nn.LayerNorm`` (affine) over the features of a feature-major activation:
    ``y = gamma x^ + beta``, ``x^ = (x - mean) / sigma``, ``sigma = sqrt(var + eps)`` (biased variance), and
    its backward ``dx = (g' - mean(g') - x^ mean(g' x^)) / sigma`` with ``g' = gamma g``, means over the features.

    :param module: the LayerNorm (affine, one normalised dimension)
    :param weight_gradient: where the gradient of ``gamma`` is written
    :param bias_gradient: where the gradient of ``beta`` is written
    """

    def __init__(self, module: nn.LayerNorm, weight_gradient: th.Tensor, bias_gradient: th.Tensor):
        self.weight, self.bias = _column(module.weight), _column(module.bias)
        self.weight_gradient, self.bias_gradient = weight_gradient, bias_gradient.unsqueeze(1)
        self.eps = module.eps
        self._saved: tuple[th.Tensor, th.Tensor] | None = None

    @staticmethod
    def supports(module: nn.Module) -> bool:
        return (
            type(module) is nn.LayerNorm
            and module.elementwise_affine
            and module.bias is not None
            and len(module.normalized_shape) == 1
        )

    def forward(self, x: th.Tensor, out: th.Tensor) -> th.Tensor:
        """``LayerNorm(x)`` into ``out`` (which may be ``x``)."""
        centered = x - x.mean(dim=0, keepdim=True)
        inverse_std = centered.square().mean(dim=0, keepdim=True).add_(self.eps).rsqrt_()
        normalized = centered.mul_(inverse_std)
        self._saved = (normalized, inverse_std)
        return th.mul(normalized, self.weight, out=out).add_(self.bias)

    def backward(self, gradient: th.Tensor, parameter_gradients: bool = True) -> th.Tensor:
        """The gradient with respect to the input of the last :meth:`forward`, given the one of its output."""
        assert self._saved is not None, "backward() needs a forward() before it"
        normalized, inverse_std = self._saved
        if parameter_gradients:
            th.linalg.vecdot(gradient, normalized, dim=1, out=self.weight_gradient)
            th.sum(gradient, dim=1, keepdim=True, out=self.bias_gradient)
        scaled = gradient * self.weight
        projection = th.linalg.vecdot(scaled, normalized, dim=0).div_(scaled.shape[0])
        centered = scaled - scaled.mean(dim=0, keepdim=True)
        return centered.addcmul_(normalized, projection, value=-1.0).mul_(inverse_std)


class LeanBatchRenorm:
    """
    sb3-contrib's ``BatchRenorm1d`` (Ioffe 2017, https://arxiv.org/abs/1702.03275) over the batch of a feature-major
    activation, with its two modes.

    Training: batch mean ``m`` and unbiased variance ``v``; during warm-up (``steps <= warmup_steps``) the layer
    normalises with them, then with ``c = m - d sqrt(v) / r`` and ``s^2 = v / r^2`` where ``r = clip(sqrt(v + eps) /
    sqrt(v_run + eps), 1/r_max, r_max)`` and ``d = clip((m - m_run) / sqrt(v_run + eps), -d_max, d_max)`` carry no
    gradient; ``y = gamma (x - c) / sqrt(s^2 + eps) + beta``; the running statistics move by ``momentum`` towards
    ``(m, v)`` and ``steps`` counts the pass, as in the module. Differentiating ``m`` and ``v`` through ``c`` and ``s``
    gives, with ``g' = gamma g``, ``u = (x - c) / sqrt(s^2 + eps)`` and sums over the batch of ``n``::

        dx = (g' - mean(g') + (x - m) (sum(g') d / (r sqrt(v)) - sum(g' u) / (r^2 sqrt(s^2 + eps))) / (n - 1))
             / sqrt(s^2 + eps)

    (at warm-up ``r = 1, d = 0``). Evaluation: the running statistics, an affine map per feature, nothing updated.
    Passes of contiguous float32 CPU tensors (forward in both modes, backward in training) run as compiled loops
    (:mod:`~sb3_ddpg_ext.common.renorm_kernels`: the same maths, one pass per feature row); this torch code is their
    reference and the path everywhere else.

    :param module: the layer (affine)
    :param weight_gradient: where the gradient of ``scale`` is written
    :param bias_gradient: where the gradient of ``bias`` is written
    """

    def __init__(self, module: ContribBatchRenorm, weight_gradient: th.Tensor, bias_gradient: th.Tensor):
        self.module = module
        self.weight, self.bias = _column(module.scale), _column(module.bias)
        self._gradients = (weight_gradient, bias_gradient)
        self.weight_gradient, self.bias_gradient = weight_gradient.unsqueeze(1), bias_gradient.unsqueeze(1)
        self.running_mean, self.running_var = _column(module.ra_mean), _column(module.ra_var)  # type: ignore[arg-type]
        self._saved: tuple[th.Tensor, ...] = ()
        self._compiled: tuple[th.Tensor, bool] | None = None  # the input and mode of a compiled training pass
        self._stats = np.empty((module.num_features, 6))  # its per-feature statistics (renorm_kernels)
        # The compiled passes' tensors, as NumPy views resolved at the first pass (the same storage as the columns
        # above): a pass is a few microseconds of compiled loop, and resolving them at every call cost several times
        # that. With them, the per-feature scale of an evaluation pass, which the next one overwrites.
        self._arrays: _CompiledArrays | None = None

    @staticmethod
    def supports(module: nn.Module) -> bool:
        return isinstance(module, ContribBatchRenorm) and type(module).forward in _BATCH_RENORM_FORWARDS and module.affine

    def forward(self, x: th.Tensor, out: th.Tensor, training: bool) -> th.Tensor:
        """The layer on ``x`` into ``out``; in training mode its running statistics and step count move."""
        self._compiled = None
        if not training:
            if renorm_kernels.applies(x) and out.is_contiguous():
                a = self._arrays or self._resolve_arrays()
                eps = float(self.module.eps)
                renorm_kernels.running_forward(
                    x.numpy(), a.weight, a.bias, a.running_mean, a.running_var, eps, out.numpy(), a.scale
                )
                self._saved = (x, a.scale_column)
                return out
            inverse_std = (self.running_var + self.module.eps).rsqrt_()
            scale = inverse_std.mul_(self.weight)
            self._saved = (x, scale)
            return th.mul(x, scale, out=out).add_(self.bias - self.running_mean * scale)
        module = self.module
        if renorm_kernels.applies(x) and out.is_contiguous():
            a = self._arrays or self._resolve_arrays()
            renormalizing = int(a.steps) > module.warmup_steps
            constants = (float(module.eps), float(module.momentum), float(module.rmax), float(module.dmax))
            renorm_kernels.renorm_forward(
                x.numpy(), a.weight, a.bias, a.running_mean, a.running_var, *constants, renormalizing, out.numpy(), self._stats
            )
            a.steps[...] += 1  # the module's step count, in place (a tensor's += through the module costs more than the pass)
            self._compiled = (x, renormalizing)
            return out
        renormalizing = int(module.steps) > module.warmup_steps  # type: ignore[arg-type]
        count = x.shape[1]
        mean = x.mean(dim=1, keepdim=True)
        centered = x - mean
        var = th.linalg.vecdot(centered, centered, dim=1).unsqueeze_(1).div_(count - 1)
        if renormalizing:
            running_std = (self.running_var + module.eps).sqrt_()
            r = ((var + module.eps).sqrt_() / running_std).clamp_(1 / module.rmax, module.rmax)
            d = ((mean - self.running_mean) / running_std).clamp_(-module.dmax, module.dmax)
            std = var.sqrt()
            shift = d * std / r  # m - c
            inverse_std = (var / r.square() + module.eps).rsqrt_()
        else:
            r = d = std = shift = None  # type: ignore[assignment]
            inverse_std = (var + module.eps).rsqrt()
        self.running_mean.lerp_(mean, module.momentum)  # m_run + momentum (m - m_run), as the module writes it
        self.running_var.lerp_(var, module.momentum)
        module.steps += 1  # type: ignore[operator, assignment]
        self._saved = (centered, inverse_std, r, d, std, shift)
        scale = inverse_std * self.weight
        out = th.mul(centered, scale, out=out)  # gamma (x - m) / sigma, then + gamma (m - c) / sigma + beta
        return out.add_(self.bias if shift is None else th.addcmul(self.bias, shift, scale))

    def backward(self, gradient: th.Tensor, parameter_gradients: bool = True, input_gradient: bool = True) -> th.Tensor | None:
        """
        The gradient with respect to the input of the last :meth:`forward`, given the one of its output (None with
        ``input_gradient=False``: only the parameters' gradients, e.g. for a layer on the network's inputs).
        """
        if self._compiled is not None:
            return self._compiled_backward(gradient, parameter_gradients, input_gradient)
        if len(self._saved) == 2:
            return self._evaluation_backward(gradient, parameter_gradients, input_gradient)
        centered, inverse_std, r, d, std, shift = self._saved
        assert inverse_std is not None
        gradient_sum = gradient.sum(dim=1, keepdim=True)
        # sum(g u) = (sum(g (x - m)) + (m - c) sum(g)) / sigma: the gradient of gamma.
        weight_gradient = th.linalg.vecdot(gradient, centered, dim=1).unsqueeze(1)
        if shift is not None:
            weight_gradient.addcmul_(shift, gradient_sum)
        weight_gradient.mul_(inverse_std)
        if parameter_gradients:
            self.weight_gradient.copy_(weight_gradient)
            self.bias_gradient.copy_(gradient_sum)
        if not input_gradient:
            return None
        # With g' = gamma g: sum(g') = gamma sum(g), sum(g' u) = gamma sum(g u).
        scaled_sum, scaled_projection = gradient_sum * self.weight, weight_gradient.mul_(self.weight)
        count = gradient.shape[1]
        coefficient = scaled_projection.mul_(inverse_std)
        if r is not None:
            # A feature with no variance in the batch (a dead ReLU) has x - m = 0: its term is 0 (autograd's is
            # 0 * inf = nan there, which the ReLU before the layer masks).
            coefficient.div_(r.square()).sub_(th.where(std > 0, scaled_sum * d / (r * std), 0.0))
        coefficient.mul_(inverse_std / -(count - 1))
        result = th.mul(gradient, inverse_std * self.weight)
        result.add_(scaled_sum.mul_(inverse_std / -count))
        return result.addcmul_(centered, coefficient)

    def _compiled_backward(self, gradient: th.Tensor, parameter_gradients: bool, input_gradient: bool) -> th.Tensor | None:
        assert self._compiled is not None
        x, renormalizing = self._compiled
        gradient = gradient.contiguous()
        a = self._arrays or self._resolve_arrays()
        weight_gradient, bias_gradient = (a.weight_gradient, a.bias_gradient) if parameter_gradients else (a.scratch,) * 2
        result = th.empty_like(gradient) if input_gradient else gradient  # not written without input_gradient
        renorm_kernels.renorm_backward(
            gradient.numpy(),
            x.numpy(),
            a.weight,
            self._stats,
            renormalizing,
            input_gradient,
            weight_gradient,
            bias_gradient,
            result.numpy(),
        )
        return result if input_gradient else None

    def _resolve_arrays(self) -> _CompiledArrays:
        """The layer's :class:`_CompiledArrays` (scratch and scale in the parameters' dtype), kept for later passes."""
        module = self.module
        weight, bias, running_mean, running_var, steps, weight_gradient, bias_gradient = (
            tensor.detach().numpy()  # type: ignore[operator]
            for tensor in (module.scale, module.bias, module.ra_mean, module.ra_var, module.steps, *self._gradients)
        )
        scale = np.empty_like(weight)
        self._arrays = _CompiledArrays(
            weight=weight,
            bias=bias,
            running_mean=running_mean,
            running_var=running_var,
            steps=steps,
            weight_gradient=weight_gradient,
            bias_gradient=bias_gradient,
            scratch=np.empty_like(weight),
            scale=scale,
            scale_column=th.from_numpy(scale).unsqueeze(1),
        )
        return self._arrays

    def _evaluation_backward(self, gradient: th.Tensor, parameter_gradients: bool, input_gradient: bool) -> th.Tensor | None:
        x, scale = self._saved
        if parameter_gradients:  # u = (x - m_run) / sigma_run = (y - beta) / gamma
            inverse_std = (self.running_var + self.module.eps).rsqrt()
            projection = th.linalg.vecdot(gradient, x, dim=1).unsqueeze(1)
            self.bias_gradient.copy_(gradient.sum(dim=1, keepdim=True))
            self.weight_gradient.copy_(projection.sub_(self.running_mean * self.bias_gradient).mul_(inverse_std))
        return gradient * scale if input_gradient else None


def _batch_renorm_forwards() -> tuple[object, ...]:
    # The forward passes written out above: sb3-contrib's and DDPGExt's (the same maths, a faster batch variance).
    from sb3_ddpg_ext.common.batch_renorm import BatchRenorm1d

    return (ContribBatchRenorm.forward, BatchRenorm1d.forward)


_BATCH_RENORM_FORWARDS = _batch_renorm_forwards()


class LeanAvgL1Norm:
    """
    TD7's AvgL1Norm over the features of a feature-major activation, ``y = x / m`` with ``m = max(mean |x|, eps)``
    per sample, and its backward ``dx = g / m - sign(x) sum(g x) / (m^2 n)`` over the ``n`` features (``g / eps``
    where the mean is below ``eps``: the clamp passes no gradient).

    :param eps: the smallest divisor (TD7's and :func:`~sb3_ddpg_ext.ddpg_ext.encoders.avg_l1_norm`'s 1e-8)
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = eps
        self._saved: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None

    def forward(self, x: th.Tensor) -> th.Tensor:
        """``AvgL1Norm(x)`` in a new tensor; ``x`` is kept for the backward (do not overwrite it before)."""
        mean = x.abs().mean(dim=0, keepdim=True)
        unclamped = mean > self.eps
        inverse = mean.clamp_(min=self.eps).reciprocal_()
        self._saved = (x, inverse, unclamped)
        return x * inverse

    def backward(self, gradient: th.Tensor) -> th.Tensor:
        """The gradient with respect to the input of the last :meth:`forward`, given the one of its output."""
        assert self._saved is not None, "backward() needs a forward() before it"
        x, inverse, unclamped = self._saved
        projection = th.linalg.vecdot(gradient, x, dim=0).unsqueeze(0)
        coefficient = projection.mul_(inverse.square()).div_(-x.shape[0]).mul_(unclamped)
        return (gradient * inverse).addcmul_(x.sign(), coefficient)

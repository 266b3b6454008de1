"""
BatchRenorm's forward passes (training and evaluation) and training backward pass as compiled loops (numba), one
pass over each feature's row.

The torch path of :class:`~sb3_ddpg_ext.common.lean_norms.LeanBatchRenorm` runs some twenty kernels per pass, each
reading and writing whole ``features x batch`` arrays; these two functions compute the same maths (written out in
that class's docstring) reading each row once or twice and writing one, with the per-feature statistics in float64.
They are used for contiguous float32 tensors on the CPU while :data:`use_compiled` is on; the torch path stays the public
reference, and the tests compare the two (and both with autograd).
"""

import numpy as np
import torch as th
from numba import njit

# Switched off by tests to run the torch path.
use_compiled = True
# Reassociation lets the sums vectorise; no "nnan"/"ninf": a NaN or inf input propagates as in torch (a diverging
# run is seen, not hidden), and division by zero gives inf as torch does (error_model="numpy").
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


def applies(x: th.Tensor) -> bool:
    """Whether the compiled passes take this activation (float32, on the CPU, contiguous)."""
    return use_compiled and x.device.type == "cpu" and x.dtype == th.float32 and x.is_contiguous()


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def renorm_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    momentum: float,
    rmax: float,
    dmax: float,
    renormalizing: bool,
    out: np.ndarray,
    stats: np.ndarray,
) -> None:  # pragma: no cover
    """
    ``out = gamma (x - m) / sigma + gamma (m - c) / sigma + beta`` per feature (row of ``x``), with the batch mean
    ``m``, the unbiased batch variance ``v``, and (renormalising) ``r``, ``d`` from the running statistics, which then
    move by ``momentum``. ``stats`` receives per feature: ``m``, ``1/sigma``, ``r``, ``d``, ``sqrt(v)``, ``m - c``.
    """
    features, count = x.shape
    for f in range(features):
        total = 0.0
        for i in range(count):
            total += x[f, i]
        mean = total / count
        squares = 0.0
        for i in range(count):
            centered = x[f, i] - mean
            squares += centered * centered
        var = squares / (count - 1)
        std = np.sqrt(var)
        if renormalizing:
            running_std = np.sqrt(running_var[f] + eps)
            r = min(max(np.sqrt(var + eps) / running_std, 1.0 / rmax), rmax)
            d = min(max((mean - running_mean[f]) / running_std, -dmax), dmax)
            shift = d * std / r
            inverse_std = 1.0 / np.sqrt(var / (r * r) + eps)
        else:
            r, d, shift = 1.0, 0.0, 0.0
            inverse_std = 1.0 / np.sqrt(var + eps)
        running_mean[f] += momentum * (mean - running_mean[f])
        running_var[f] += momentum * (var - running_var[f])
        scale = inverse_std * weight[f]
        offset = bias[f] + shift * scale - mean * scale
        for i in range(count):
            out[f, i] = x[f, i] * scale + offset
        stats[f, 0], stats[f, 1], stats[f, 2], stats[f, 3], stats[f, 4], stats[f, 5] = (
            mean,
            inverse_std,
            r,
            d,
            std,
            shift,
        )


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def running_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    out: np.ndarray,
    scale: np.ndarray,
) -> None:  # pragma: no cover
    """
    Evaluation mode: ``out = x s + beta - m_run s`` per feature with ``s = gamma / sqrt(v_run + eps)``, written into
    ``scale`` for the backward pass (``dx = g s``); nothing else changes.
    """
    features, count = x.shape
    for f in range(features):
        feature_scale = weight[f] / np.sqrt(running_var[f] + eps)
        offset = bias[f] - running_mean[f] * feature_scale
        scale[f] = feature_scale
        for i in range(count):
            out[f, i] = x[f, i] * feature_scale + offset


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def renorm_backward(
    gradient: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stats: np.ndarray,
    renormalizing: bool,
    input_gradient: bool,
    weight_gradient: np.ndarray,
    bias_gradient: np.ndarray,
    dx: np.ndarray,
) -> None:  # pragma: no cover
    """
    The gradients of ``gamma``, ``beta`` and (with ``input_gradient``) of the input, given the output's, for the
    forward pass that wrote ``stats``; a feature with no batch variance gets the ``d`` term 0 (see the torch path).
    """
    features, count = gradient.shape
    for f in range(features):
        mean, inverse_std, r, d, std, shift = stats[f, 0], stats[f, 1], stats[f, 2], stats[f, 3], stats[f, 4], stats[f, 5]
        gradient_sum = 0.0
        projection = 0.0
        for i in range(count):
            g = gradient[f, i]
            gradient_sum += g
            projection += g * (x[f, i] - mean)
        gamma_gradient = (projection + shift * gradient_sum) * inverse_std
        weight_gradient[f] = gamma_gradient
        bias_gradient[f] = gradient_sum
        if not input_gradient:
            continue
        gamma = weight[f]
        scaled_sum = gradient_sum * gamma
        coefficient = gamma_gradient * gamma * inverse_std
        if renormalizing:
            coefficient = coefficient / (r * r) - (scaled_sum * d / (r * std) if std > 0 else 0.0)
        coefficient *= inverse_std / -(count - 1)
        scale = inverse_std * gamma
        constant = scaled_sum * inverse_std / -count - mean * coefficient
        for i in range(count):
            dx[f, i] = gradient[f, i] * scale + x[f, i] * coefficient + constant

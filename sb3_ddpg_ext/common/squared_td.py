r"""
The squared-TD-error step of scalar critics in one compiled pass over the batch: the TD target, the loss, each sample's
priority and the loss's gradient with respect to the critics' outputs.

Per sample :math:`i` with importance weight :math:`w_i` (1 without prioritization), over critics :math:`k`:

.. math::

    y_i = r_i + \gamma_i (1 - d_i) \min_j Q'_j(s'_i, a'_i), \qquad e_{ik} = Q_k(s_i, a_i) - y_i

    L = \frac{1}{B} \sum_i w_i \sum_k e_{ik}^2, \qquad p_i = \frac{1}{K} \sum_k |e_{ik}|, \qquad
    \frac{\partial L}{\partial Q_k(s_i, a_i)} = \frac{2 w_i}{B} e_{ik}

with :math:`\gamma_i = \gamma` for 1-step targets or the buffer's :math:`\gamma^{m_i}` for n-step ones. It is the
arithmetic of ``DDPGExt._td_target``, ``_critic_loss`` and ``_critic_loss_gradients``: the targets, priorities and
gradients are the same float32 numbers (the same operations in the same order, the target's multiply-add fused as in
torch's CPU kernel); the loss and the means are summed in float64. Those methods take ~16 tensor ops, each ~5-15 us
after an update's matrix products have evicted the caches on this CPU: ~150 us per update, this step ~50 us with its
NumPy views (measured side by side in one process, HalfCheetah-v5, 400-300 critics).
"""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from numba import njit, types
from numba.extending import intrinsic

_NO_VALUES = np.empty(0, dtype=np.float32)


@intrinsic
def _fused_multiply_add(typing_context: Any, a: Any, b: Any, c: Any) -> tuple[Any, Any]:  # pragma: no cover
    # a * b + c rounded once, as torch's CPU addcmul computes r + (s t1) t2 (its kernels are built with FMA contraction).
    signature = types.float32(types.float32, types.float32, types.float32)
    return signature, lambda context, builder, _, arguments: builder.fma(*arguments)


@njit(
    "void(float32[:, :], float32[:, :], float32[:], float32[:], float32[:], float64, float32[:], float32[:, :], float32[:],"
    " float64[:])",
    cache=True,
    nogil=True,
)
def _squared_td_pass(
    next_q: np.ndarray,
    q: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    discounts: np.ndarray,
    gamma: float,
    weights: np.ndarray,
    output_gradients: np.ndarray,
    priorities: np.ndarray,
    summary: np.ndarray,
) -> None:  # pragma: no cover
    batch_size, n_critics = q.shape
    gradient_scale = np.float32(2.0 / batch_size)
    loss = 0.0
    priority_sum = 0.0
    q_sum = 0.0
    for i in range(batch_size):
        lowest = next_q[i, 0]
        for j in range(1, next_q.shape[1]):
            lowest = min(lowest, next_q[i, j])
        not_done = np.float32(1.0) - dones[i]
        # torch's addcmul(r, 1 - d, q', value=gamma), or addcmul(r, (1 - d) gamma^m, q') for n-step targets.
        bootstrap = np.float32(gamma) * not_done if discounts.shape[0] == 0 else not_done * discounts[i]
        target: float = _fused_multiply_add(bootstrap, lowest, rewards[i])  # type: ignore[call-arg]  # numba adds the context
        weight_scale = gradient_scale if weights.shape[0] == 0 else weights[i] * gradient_scale
        squared_errors = 0.0
        absolute_errors = np.float32(0.0)
        for k in range(n_critics):
            error = q[i, k] - target
            squared_errors += error * error
            absolute_errors += abs(error)
            q_sum += q[i, k]
            output_gradients[i, k] = error * weight_scale
        priorities[i] = absolute_errors / n_critics
        loss += squared_errors if weights.shape[0] == 0 else weights[i] * squared_errors
        priority_sum += priorities[i]
    summary[0] = loss / batch_size
    summary[1] = priority_sum / batch_size
    summary[2] = q_sum / (batch_size * n_critics)


class SquaredTDStep(NamedTuple):
    """
    :param loss: the weighted mean over the batch of the summed squared TD errors (0-d)
    :param priorities: each sample's mean absolute TD error over the critics, shape ``(batch,)``
    :param priority_mean: their mean (0-d)
    :param q_mean: the mean of the critics' Q-values (0-d)
    :param output_gradients: the loss's gradient with respect to the critics' outputs, shape ``(batch, n_critics, 1)``
    """

    loss: th.Tensor
    priorities: th.Tensor
    priority_mean: th.Tensor
    q_mean: th.Tensor
    output_gradients: th.Tensor


def squared_td_step(
    next_outputs: th.Tensor,
    outputs: th.Tensor,
    rewards: th.Tensor,
    dones: th.Tensor,
    gamma: float,
    discounts: th.Tensor | None = None,
    weights: th.Tensor | None = None,
) -> SquaredTDStep:
    """
    The TD step of scalar critics on CPU tensors without autograd graphs (see the module docstring).

    :param next_outputs: the target critics' outputs for ``(s', a')``, shape ``(batch, n_target_critics, 1)``
    :param outputs: the critics' outputs for ``(s, a)``, shape ``(batch, n_critics, 1)``
    :param rewards: shape ``(batch, 1)``; n-step reward sums with ``discounts``
    :param dones: terminations, shape ``(batch, 1)``
    :param gamma: the discount when ``discounts`` is None
    :param discounts: the n-step bootstraps' discounts ``gamma^m``, shape ``(batch, 1)``
    :param weights: importance weights, shape ``(batch, 1)``; None for none
    """
    batch_size, n_critics = outputs.shape[0], outputs.shape[1]
    priorities = np.empty(batch_size, dtype=np.float32)
    output_gradients = np.empty((batch_size, n_critics), dtype=np.float32)
    summary = np.empty(3, dtype=np.float64)
    _squared_td_pass(
        next_outputs.numpy().reshape(batch_size, -1),
        outputs.numpy().reshape(batch_size, n_critics),
        rewards.numpy().reshape(-1),
        dones.numpy().reshape(-1),
        _NO_VALUES if discounts is None else discounts.numpy().reshape(-1),
        gamma,
        _NO_VALUES if weights is None else weights.numpy().reshape(-1),
        output_gradients,
        priorities,
        summary,
    )
    loss, priority_mean, q_mean = th.from_numpy(summary.astype(np.float32))
    return SquaredTDStep(loss, th.from_numpy(priorities), priority_mean, q_mean, th.from_numpy(output_gradients).unsqueeze(-1))

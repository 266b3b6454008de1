"""SB3's action rescaling after a squashed actor, in one compiled pass with the same float32 arithmetic."""

import numpy as np
from numba import njit


@njit("void(float32[:, ::1], float32[::1], float32[::1], float32[:, ::1], float32[:, ::1])", cache=True, nogil=True)
def _rescale(
    actor_outputs: np.ndarray, low: np.ndarray, high: np.ndarray, buffer_actions: np.ndarray, env_actions: np.ndarray
) -> None:  # pragma: no cover
    # NumPy's float32 operations in NumPy's order (its Python-float constants are float32 here too, NEP 50).
    one, half, two = np.float32(1.0), np.float32(0.5), np.float32(2.0)
    for row in range(actor_outputs.shape[0]):
        for column in range(actor_outputs.shape[1]):
            span = high[column] - low[column]
            unscaled = low[column] + half * (actor_outputs[row, column] + one) * span
            scaled = two * ((unscaled - low[column]) / span) - one
            buffer_actions[row, column] = scaled
            env_actions[row, column] = low[column] + half * (scaled + one) * span


def rescaled_actions(actor_outputs: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    For a squashed actor's outputs in [-1, 1] and a float32 Box ``[low, high]``, what SB3's ``_sample_action`` computes
    without action noise, with the policy's ``unscale_action``/``scale_action``: ``predict`` unscales, the buffer action
    is ``scale_action`` of that, and the env action ``unscale_action`` of the buffer action. The same float32 numbers as
    those 12 NumPy operations, without their per-call overhead: ~40 us less per environment step on this CPU, after an
    update has evicted the caches (``_sample_action`` 233 -> 191 us, side by side in one process, HalfCheetah-v5).

    :param actor_outputs: float32, ``(n_envs, action_dim)``
    :param low: the action space's lower bounds, float32, ``(action_dim,)``
    :param high: its upper bounds
    :return: env actions and buffer actions, ``(n_envs, action_dim)`` each
    """
    buffer_actions = np.empty_like(actor_outputs)
    env_actions = np.empty_like(actor_outputs)
    _rescale(actor_outputs, low, high, buffer_actions, env_actions)
    return env_actions, buffer_actions

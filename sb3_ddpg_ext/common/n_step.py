r"""
n-step returns gathered from a replay buffer's arrays, vectorised over a batch.

For a transition stored at ``(row, env)`` the n-step return is

.. math:: R = \sum_{k=0}^{m-1} \gamma^k r_{t+k}, \qquad y = R + \gamma^m (1 - d_{t+m-1}) Q(s_{t+m}, \cdot)

where ``m <= n`` stops at the first episode end (termination or truncation) so that a return never
crosses into the next episode. As in SB3's ``NStepReplayBuffer``: a termination zeroes the bootstrap,
a truncation (timeout) bootstraps from the true last observation, and the newest stored row also stops
the sum (the rows after it belong to older episodes or are empty).
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit
from stable_baselines3.common.buffers import ReplayBuffer


class NStepTargets(NamedTuple):
    """
    :param rewards: discounted reward sums, shape ``(batch,)``
    :param discounts: ``gamma ** m`` for the bootstrap, shape ``(batch,)``
    :param last_rows: row of the last transition summed, whose ``next_observation`` is bootstrapped from
    :param dones: 1 where the last transition summed is a termination (not a timeout), else 0
    """

    rewards: np.ndarray
    discounts: np.ndarray
    last_rows: np.ndarray
    dones: np.ndarray


@njit(cache=True, nogil=True)
def _gather_windows(
    rewards: np.ndarray,
    dones: np.ndarray,
    timeouts: np.ndarray,
    rows: np.ndarray,
    envs: np.ndarray,
    newest_row: int,
    windows: np.ndarray,
    last_rows: np.ndarray,
    lengths: np.ndarray,
    terminal: np.ndarray,
) -> None:  # pragma: no cover
    buffer_size, n_steps = rewards.shape[0], windows.shape[1]
    for k in range(rows.shape[0]):
        row, env = rows[k], envs[k]
        for step in range(n_steps):
            windows[k, step] = rewards[row, env]
            if dones[row, env] != 0 or timeouts[row, env] != 0 or row == newest_row or step == n_steps - 1:
                lengths[k] = step + 1
                break
            row = row + 1 if row + 1 < buffer_size else 0
        last_rows[k] = row
        terminal[k] = dones[row, env] * (1.0 - timeouts[row, env])


# Compiled for SB3's buffer arrays (float32, C order) when this module is imported (loaded from numba's cache after the
# first time), so that no first sample inside a timed learn() pays the compilation; other types compile on first use.
_gather_windows.compile(
    "void(float32[:, ::1], float32[:, ::1], float32[:, ::1], int64[::1], int64[::1], int64, float32[:, ::1], int64[::1],"
    " int64[::1], float32[::1])"
)


def n_step_targets(
    buffer: ReplayBuffer,
    rows: np.ndarray,
    envs: np.ndarray,
    n_steps: int,
    gamma: float,
    scale_rewards: Callable[[np.ndarray], np.ndarray] | None = None,
) -> NStepTargets:
    """
    :param buffer: the buffer whose ``rewards``, ``dones`` and ``timeouts`` (zeros when timeouts are not handled),
        shape ``(buffer_size, n_envs)``, are read; its row written last ends every window
    :param rows: sampled rows, shape ``(batch,)``
    :param envs: sampled env columns, shape ``(batch,)``
    :param n_steps: the ``n`` of n-step returns
    :param gamma: discount factor
    :param scale_rewards: applied to the gathered rewards (e.g. ``VecNormalize``'s reward normalisation)
    """
    batch = rows.shape[0]
    windows = np.zeros((batch, n_steps), dtype=np.float32)
    last_rows = np.empty(batch, dtype=np.int64)
    lengths = np.empty(batch, dtype=np.int64)
    terminal = np.empty(batch, dtype=np.float32)
    # The walk along each window stops at a data-dependent step: compiled, not a (batch, n) fancy index.
    newest_row = (buffer.pos - 1) % buffer.buffer_size
    _gather_windows(
        buffer.rewards,
        buffer.dones,
        buffer.timeouts,
        rows.astype(np.int64),
        envs.astype(np.int64),
        newest_row,
        windows,
        last_rows,
        lengths,
        terminal,
    )
    if scale_rewards is not None:
        windows = scale_rewards(windows) * (np.arange(n_steps) < lengths[:, None])
    return NStepTargets(
        rewards=windows @ (gamma ** np.arange(n_steps, dtype=np.float32)).astype(np.float32),
        discounts=(gamma**lengths).astype(np.float32),
        last_rows=last_rows,
        dones=terminal,
    )

"""
A sum tree over a fixed number of non-negative leaves, with batched updates and prefix-sum searches.

Layout: a complete binary tree in one array ``nodes`` of size ``2 * P`` where ``P`` is the smallest power
of two >= capacity; node ``k`` has children ``2k`` and ``2k + 1``, the root is node 1 and leaf ``i`` is
node ``P + i``. Every inner node holds the sum of its children, recomputed from them on each update
(never incremented), so rounding errors do not accumulate however long the tree lives.

The loops over a batch run in numba-compiled code, ``log2(P)`` levels each; there is no Python loop
over a batch and no random number generator inside.
"""

import numpy as np
from numba import njit

from sb3_ddpg_ext.common.validation import InvalidValueError

# Both kernels walk the tree level by level for the whole batch rather than element by element: the
# batch's memory accesses at one level are independent, so the CPU overlaps their cache misses (on a large tree,
# much faster than one descent after another).


@njit(cache=True, nogil=True)
def _set_leaves(
    nodes: np.ndarray, offset: int, depth: int, indices: np.ndarray, values: np.ndarray
) -> None:  # pragma: no cover
    batch = indices.shape[0]
    touched = np.empty(batch, dtype=np.int64)
    for k in range(batch):
        touched[k] = indices[k] + offset
        nodes[touched[k]] = values[k]
    # All leaves are written before any parent is recomputed, so repeated indices are harmless.
    for _ in range(depth):
        for k in range(batch):
            parent = touched[k] >> 1
            nodes[parent] = nodes[2 * parent] + nodes[2 * parent + 1]
            touched[k] = parent


@njit(cache=True, nogil=True)
def _find_prefix_sums(
    nodes: np.ndarray, offset: int, depth: int, targets: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    batch = targets.shape[0]
    remaining = targets.copy()
    out[:] = 1
    for _ in range(depth):
        for k in range(batch):
            left_child = 2 * out[k]
            left_sum = nodes[left_child]
            # Branch-free: which way a search goes is data-dependent and mispredicts half the time.
            go_right = remaining[k] >= left_sum
            remaining[k] -= left_sum * go_right
            out[k] = left_child + go_right
    out -= offset


@njit(cache=True, nogil=True)
def _fill_leaf_range(nodes: np.ndarray, offset: int, start: int, stop: int, value: float) -> None:  # pragma: no cover
    first, last = start + offset, stop - 1 + offset
    nodes[first : last + 1] = value
    while first > 1:
        first, last = first >> 1, last >> 1
        for node in range(first, last + 1):
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]


# Compiled for the types SumTree passes when this module is imported (loaded from numba's cache after the first time),
# so that no first sample inside a timed learn() pays ~1 s of compilation.
_set_leaves.compile("void(float64[::1], int64, int64, int64[::1], float64[::1])")
_find_prefix_sums.compile("void(float64[::1], int64, int64, float64[::1], int64[::1])")
_fill_leaf_range.compile("void(float64[::1], int64, int64, int64, float64)")


class SumTree:
    """
    Sum tree over ``capacity`` leaves, all zero at first.

    :param capacity: number of leaves
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise InvalidValueError(f"`capacity` must be >= 1, got {capacity}")
        self.capacity = capacity
        self._depth = max(capacity - 1, 0).bit_length()
        self._offset = 1 << self._depth
        self._nodes = np.zeros(2 * self._offset, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._nodes[1])

    def max(self, stop: int) -> float:
        """Largest of the leaves ``[0, stop)`` (one pass over them: for occasional use)."""
        if not 0 < stop <= self.capacity:
            raise IndexError(f"`stop` must be in [1, {self.capacity}], got {stop}")
        return float(self._nodes[self._offset : self._offset + stop].max())

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices``."""
        return self._nodes[self._offset + np.asarray(indices)]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """
        Set leaves and refresh their ancestors. With repeated indices, the last value wins.

        :param indices: leaf indices, integers in ``[0, capacity)``
        :param values: new non-negative leaf values, same length
        """
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if indices.shape != values.shape or indices.ndim != 1:
            raise InvalidValueError(
                f"indices and values must be 1-d of one length, got shapes {indices.shape} and {values.shape}"
            )
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"leaf indices must be in [0, {self.capacity}), got min {indices.min()} and max {indices.max()}")
        _set_leaves(self._nodes, self._offset, self._depth, indices, values)

    def fill(self, start: int, stop: int, value: float) -> None:
        """
        Set the leaves ``[start, stop)`` to ``value`` (a replay buffer's newest row: one call per env step,
        so it takes no arrays).
        """
        if not 0 <= start < stop <= self.capacity:
            raise IndexError(f"leaf range must satisfy 0 <= start < stop <= {self.capacity}, got [{start}, {stop})")
        _fill_leaf_range(self._nodes, self._offset, start, stop, value)

    def find_prefix_sum(self, targets: np.ndarray) -> np.ndarray:
        """
        For each target mass ``m`` in ``[0, total)``, the leaf ``i`` with
        ``sum(leaves[:i]) <= m < sum(leaves[:i + 1])``: sampling ``m`` uniformly in ``[0, total)``
        draws leaf ``i`` with probability ``leaves[i] / total``.

        :param targets: 1-d array of target masses
        :return: leaf indices, one per target
        """
        targets = np.ascontiguousarray(targets, dtype=np.float64)
        out = np.empty(targets.shape[0], dtype=np.int64)
        _find_prefix_sums(self._nodes, self._offset, self._depth, targets, out)
        return out

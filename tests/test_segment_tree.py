"""The sum tree agrees with brute force (np.cumsum) after any sequence of batched updates."""

import numpy as np
import pytest

from sb3_ddpg_ext.common.segment_tree import SumTree


def _brute_force_prefix_search(leaves, targets):
    # Leaf i such that cumsum[i-1] <= target < cumsum[i].
    return np.searchsorted(np.cumsum(leaves), targets, side="right")


@pytest.mark.parametrize("capacity", [1, 2, 7, 64, 1000])
def test_sums_and_prefix_searches_equal_brute_force_after_random_updates(capacity):
    rng = np.random.default_rng(capacity)
    tree, leaves = SumTree(capacity), np.zeros(capacity)
    for _ in range(50):
        # Batches with repeated indices: the last value of an index wins, as in a sequential loop.
        indices = rng.integers(0, capacity, size=rng.integers(1, 40))
        values = rng.random(indices.size) * rng.choice([1e-6, 1.0, 1e3])
        tree.update(indices, values)
        for index, value in zip(indices, values, strict=True):
            leaves[index] = value

        np.testing.assert_allclose(tree.total, leaves.sum(), rtol=1e-12)
        np.testing.assert_array_equal(tree[np.arange(capacity)], leaves)
        targets = rng.random(256) * leaves.sum()
        np.testing.assert_array_equal(tree.find_prefix_sum(targets), _brute_force_prefix_search(leaves, targets))


def test_prefix_search_skips_zero_leaves_and_hits_boundaries():
    tree = SumTree(6)
    tree.update(np.array([0, 2, 5]), np.array([1.0, 2.0, 3.0]))
    # Cumulative sums: leaf 0 covers [0, 1), leaf 2 covers [1, 3), leaf 5 covers [3, 6).
    np.testing.assert_array_equal(tree.find_prefix_sum(np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.999])), [0, 0, 2, 2, 5, 5])


def test_total_does_not_drift_over_many_updates():
    rng = np.random.default_rng(0)
    tree = SumTree(4096)
    for _ in range(2000):
        tree.update(rng.integers(0, 4096, 256), rng.random(256) * 10.0)
    assert tree.total == pytest.approx(tree[np.arange(4096)].sum(), rel=1e-12)


def test_bad_input():
    tree = SumTree(4)
    with pytest.raises(IndexError, match=r"leaf indices must be in \[0, 4\)"):
        tree.update(np.array([4]), np.array([1.0]))
    with pytest.raises(ValueError, match="1-d of one length"):
        tree.update(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="`capacity` must be >= 1"):
        SumTree(0)


@pytest.mark.parametrize("capacity,start,stop", [(1, 0, 1), (10, 3, 7), (64, 0, 64), (1000, 999, 1000), (1000, 120, 133)])
def test_fill_sets_a_range_of_leaves(capacity, start, stop):
    rng = np.random.default_rng(0)
    tree, leaves = SumTree(capacity), rng.random(capacity)
    tree.update(np.arange(capacity), leaves)
    tree.fill(start, stop, 2.5)
    leaves[start:stop] = 2.5
    np.testing.assert_array_equal(tree[np.arange(capacity)], leaves)
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
    targets = rng.random(100) * leaves.sum()
    np.testing.assert_array_equal(tree.find_prefix_sum(targets), _brute_force_prefix_search(leaves, targets))
    with pytest.raises(IndexError, match="leaf range"):
        tree.fill(0, capacity + 1, 1.0)

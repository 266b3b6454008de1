r"""
Proportional prioritization (Schaul et al. 2016, https://arxiv.org/abs/1511.05952).

Transition ``i`` with TD error :math:`\delta_i` has priority :math:`p_i = |\delta_i| + \epsilon` and is
drawn with probability

.. math:: P(i) = p_i^\alpha / \sum_k p_k^\alpha

(``alpha`` is applied exactly once, when a raw priority enters the tree). New transitions get the
largest :math:`p` seen so far, so each is replayed at least about once. The importance weights that
correct the bias of non-uniform replay are

.. math:: w_i = (N \cdot P(i))^{-\beta} / \max_{j \in \text{batch}} w_j = (\min_{j} P(j) / P(i))^{\beta}

so the largest weight of a batch is 1; ``beta`` is annealed from its initial value to ``final_beta``
over training.
"""

import numpy as np
import torch as th

from sb3_ddpg_ext.common.segment_tree import SumTree
from sb3_ddpg_ext.common.validation import check_range


class NonFinitePriorityError(ValueError):
    """A NaN or infinite priority: the TD errors it came from have diverged."""


class ProportionalPriorities:
    """
    Priorities of ``capacity`` slots and the stratified sampling of a batch from them.

    :param capacity: number of slots (the buffer's rows times its envs)
    :param alpha: prioritization exponent, 0 (uniform) to 1 (fully proportional)
    :param beta: initial importance-sampling exponent
    :param final_beta: importance-sampling exponent at the end of training
    :param eps: small positive number added to raw priorities so that no transition gets probability 0
    """

    def __init__(self, capacity: int, alpha: float = 0.6, beta: float = 0.4, final_beta: float = 1.0, eps: float = 1e-6):
        check_range("alpha", alpha, low=0.0)
        check_range("beta", beta, low=0.0, high=1.0)
        check_range("final_beta", final_beta, low=0.0, high=1.0)
        check_range("eps", eps, low=0.0, low_inclusive=False)
        self.alpha = float(alpha)
        self.initial_beta = float(beta)
        self.final_beta = float(final_beta)
        self.beta = float(beta)
        self.eps = float(eps)
        # Largest p = |delta| + eps seen so far (before alpha); new transitions get it.
        self.max_priority = 1.0
        self.tree = SumTree(capacity)

    def set_progress(self, progress: float) -> None:
        """
        Anneal ``beta`` linearly with the fraction of training done.

        :param progress: fraction of training done, in [0, 1]
        """
        progress = min(max(progress, 0.0), 1.0)
        self.beta = self.initial_beta + (self.final_beta - self.initial_beta) * progress

    def add(self, start: int, stop: int) -> None:
        """Give the slots ``[start, stop)`` (new transitions) the largest priority seen so far."""
        self.tree.fill(start, stop, self.max_priority**self.alpha)

    def update(self, indices: np.ndarray | th.Tensor, priorities: np.ndarray | th.Tensor) -> None:
        """
        :param indices: slots, as returned in the samples' ``indices``
        :param priorities: raw priorities, e.g. ``|TD error|`` (``eps`` and ``alpha`` are applied here)
        """
        if isinstance(priorities, th.Tensor):
            priorities = priorities.detach().cpu().numpy()
        if isinstance(indices, th.Tensor):
            indices = indices.cpu().numpy()
        priorities = np.abs(np.asarray(priorities, dtype=np.float64).reshape(-1)) + self.eps
        if not np.all(np.isfinite(priorities)):
            raise NonFinitePriorityError(
                f"priorities must be finite, got {priorities[~np.isfinite(priorities)][:5]} (diverged TD errors?)"
            )
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(np.asarray(indices).reshape(-1), priorities**self.alpha)

    def sample(self, batch_size: int, n_valid: int) -> tuple[np.ndarray, np.ndarray]:
        """
        Draw ``batch_size`` slots among the first ``n_valid`` with probability ``P(i)``, one from each of
        ``batch_size`` equal segments of the total priority mass (stratified, as in the paper).

        :param batch_size: number of slots to draw
        :param n_valid: slots ``[0, n_valid)`` hold transitions (the others have priority 0)
        :return: the slots and their importance weights, shape ``(batch_size,)`` each
        """
        segment = self.tree.total / batch_size
        targets = (np.arange(batch_size) + np.random.random_sample(batch_size)) * segment
        # Rounding can push a target past the last non-zero leaf: keep it on a stored transition.
        indices = np.minimum(self.tree.find_prefix_sum(targets), n_valid - 1)
        return indices, self.importance_weights(indices)

    def importance_weights(self, indices: np.ndarray) -> np.ndarray:
        """Importance weights of the slots at ``indices``, normalised so that their maximum is 1."""
        probabilities = self.tree[indices]
        return (probabilities.min() / probabilities) ** self.beta

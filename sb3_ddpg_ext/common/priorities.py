r"""
Priority rules of the prioritized replay buffers: how TD errors become sampling probabilities.

Both rules keep :math:`p_i^\alpha` in one sum tree (``alpha`` applied exactly once, when a priority enters it),
draw a batch stratified over the total mass (one slot from each of ``batch_size`` equal segments), and give new
transitions the largest priority seen so far, so that each is replayed at least about once.

**Proportional** (PER, Schaul et al. 2016, https://arxiv.org/abs/1511.05952): :math:`p_i = |\delta_i| + \epsilon`,
drawn with probability :math:`P(i) = p_i^\alpha / \sum_k p_k^\alpha`, with the importance weights

.. math:: w_i = (N \cdot P(i))^{-\beta} / \max_{j \in \text{batch}} w_j = (\min_{j} P(j) / P(i))^{\beta}

(largest weight of a batch 1; ``beta`` annealed to ``final_beta`` over training). With several critics
:math:`|\delta_i|` is the mean over them.

**Loss-adjusted** (LAP, Fujimoto et al. 2020, https://arxiv.org/abs/2007.06049, as TD7 uses it):
:math:`p_i = \max(|\delta_i|, m)^\alpha` with ``m = min_priority`` and :math:`|\delta_i|` the largest over the
critics; no importance weights (all 1), and the critic is trained with the Huber loss of threshold ``m``
(:attr:`LossAdjustedPriorities.huber_threshold`): the paper shows that this pair has the expected gradient of a
uniformly sampled loss, which is why no correction is needed. The running maximum that new transitions get is reset
to the largest stored priority at each periodic target update (TD7's ``reset_max_priority``).
"""

from typing import ClassVar

import numpy as np
import torch as th

from sb3_ddpg_ext.common.segment_tree import SumTree
from sb3_ddpg_ext.common.validation import InvalidValueError, check_range


class NonFinitePriorityError(ValueError):
    """A NaN or infinite priority: the TD errors it came from have diverged."""


class Priorities:
    """
    Priorities of ``capacity`` slots and the stratified sampling of a batch from them; the rule (how a TD error
    becomes a priority, the importance weights) is the subclass's.

    :param capacity: number of slots (the buffer's rows times its envs)
    :param alpha: prioritization exponent, 0 (uniform) to 1 (fully proportional)
    """

    # The name of the rule, as the buffers' ``priority`` argument spells it.
    name: ClassVar[str]
    # The Huber loss threshold the critic must be trained with for this rule's sampling, or None (the critic's own).
    huber_threshold: float | None = None

    def __init__(self, capacity: int, alpha: float):
        check_range("alpha", alpha, low=0.0)
        self.alpha = float(alpha)
        # Largest priority seen so far (before alpha); new transitions get it.
        self.max_priority = 1.0
        self.tree = SumTree(capacity)

    def set_progress(self, progress: float) -> None:
        """
        Follow the fraction of training done, in [0, 1] (annealed parameters; nothing by default).
        """

    def add(self, start: int, stop: int) -> None:
        """Give the slots ``[start, stop)`` (new transitions) the largest priority seen so far."""
        self.tree.fill(start, stop, self.max_priority**self.alpha)

    def priorities(self, errors: np.ndarray) -> np.ndarray:
        """
        The priorities (before ``alpha``) of per-sample errors.

        :param errors: shape ``(batch,)``, or ``(batch, n_critics)`` with one column per critic
        :return: shape ``(batch,)``
        """
        raise NotImplementedError

    def update(self, indices: np.ndarray | th.Tensor, errors: np.ndarray | th.Tensor) -> None:
        """
        :param indices: slots, as returned in the samples' ``indices``
        :param errors: raw priorities, e.g. ``|TD error|``, shape ``(batch,)`` or ``(batch, n_critics)``
            (the rule turns them into priorities and applies ``alpha``)
        """
        if isinstance(errors, th.Tensor):
            errors = errors.detach().cpu().numpy()
        if isinstance(indices, th.Tensor):
            indices = indices.cpu().numpy()
        errors = np.abs(np.asarray(errors, dtype=np.float64))
        priorities = self.priorities(errors if errors.ndim == 2 else errors.reshape(-1))
        if not np.all(np.isfinite(priorities)):
            raise NonFinitePriorityError(
                f"priorities must be finite, got {priorities[~np.isfinite(priorities)][:5]} (diverged TD errors?)"
            )
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(np.asarray(indices).reshape(-1), priorities**self.alpha)

    def reset_max_priority(self, n_valid: int) -> None:
        """
        Called at each target update; nothing by default (PER keeps the largest priority ever seen).

        :param n_valid: slots ``[0, n_valid)`` hold transitions
        """

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
        raise NotImplementedError


class ProportionalPriorities(Priorities):
    """
    PER's proportional rule, ``p = |delta| + eps`` (mean over critics), with annealed importance weights.

    :param capacity: number of slots (the buffer's rows times its envs)
    :param alpha: prioritization exponent, 0 (uniform) to 1 (fully proportional)
    :param beta: initial importance-sampling exponent
    :param final_beta: importance-sampling exponent at the end of training
    :param eps: small positive number added to raw priorities so that no transition gets probability 0
    """

    name = "proportional"

    def __init__(self, capacity: int, alpha: float = 0.6, beta: float = 0.4, final_beta: float = 1.0, eps: float = 1e-6):
        super().__init__(capacity, alpha)
        check_range("beta", beta, low=0.0, high=1.0)
        check_range("final_beta", final_beta, low=0.0, high=1.0)
        check_range("eps", eps, low=0.0, low_inclusive=False)
        self.initial_beta = float(beta)
        self.final_beta = float(final_beta)
        self.beta = float(beta)
        self.eps = float(eps)

    def set_progress(self, progress: float) -> None:
        """Anneal ``beta`` linearly with the fraction of training done (in [0, 1])."""
        progress = min(max(progress, 0.0), 1.0)
        self.beta = self.initial_beta + (self.final_beta - self.initial_beta) * progress

    def priorities(self, errors: np.ndarray) -> np.ndarray:
        return (errors.mean(axis=1) if errors.ndim == 2 else errors) + self.eps

    def importance_weights(self, indices: np.ndarray) -> np.ndarray:
        probabilities = self.tree[indices]
        return (probabilities.min() / probabilities) ** self.beta


class LossAdjustedPriorities(Priorities):
    """
    LAP's rule, ``p = max(|delta|, min_priority)`` (largest over critics), no importance weights; the critic is
    trained with the Huber loss of threshold ``min_priority``.

    :param capacity: number of slots (the buffer's rows times its envs)
    :param alpha: prioritization exponent (TD7: 0.4)
    :param min_priority: the smallest priority, and the Huber loss's threshold (TD7: 1)
    """

    name = "lap"

    def __init__(self, capacity: int, alpha: float = 0.4, min_priority: float = 1.0):
        super().__init__(capacity, alpha)
        check_range("min_priority", min_priority, low=0.0, low_inclusive=False)
        self.min_priority = float(min_priority)
        self.huber_threshold = self.min_priority
        self.max_priority = self.min_priority

    def priorities(self, errors: np.ndarray) -> np.ndarray:
        return np.maximum(errors.max(axis=1) if errors.ndim == 2 else errors, self.min_priority)

    def reset_max_priority(self, n_valid: int) -> None:
        """The running maximum becomes the largest priority stored now (TD7's ``reset_max_priority``)."""
        if n_valid > 0:
            self.max_priority = float(self.tree.max(n_valid)) ** (1.0 / self.alpha) if self.alpha > 0 else self.min_priority

    def importance_weights(self, indices: np.ndarray) -> np.ndarray:
        return np.ones(len(indices))


# The rules a prioritized buffer can be built with (its ``priority`` argument), with the options each takes.
PRIORITY_RULES: dict[str, type[Priorities]] = {"proportional": ProportionalPriorities, "lap": LossAdjustedPriorities}
RULE_OPTIONS: dict[str, tuple[str, ...]] = {
    "proportional": ("alpha", "beta", "final_beta", "eps"),
    "lap": ("alpha", "min_priority"),
}


def make_priorities(priority: str, capacity: int, **options: float | None) -> Priorities:
    """
    The rule named ``priority`` over ``capacity`` slots; ``options`` left None take the rule's defaults, and an option
    the rule does not take is refused (it would be ignored).
    """
    if priority not in PRIORITY_RULES:
        raise InvalidValueError(f"`priority` must be one of {sorted(PRIORITY_RULES)}, got {priority!r}")
    given = {name: value for name, value in options.items() if value is not None}
    foreign = sorted(set(given) - set(RULE_OPTIONS[priority]))
    if foreign:
        raise InvalidValueError(
            f"{', '.join(f'`{name}`' for name in foreign)} do(es) not apply to `priority={priority!r}` "
            f"(it takes {', '.join(RULE_OPTIONS[priority])})"
        )
    return PRIORITY_RULES[priority](capacity, **given)

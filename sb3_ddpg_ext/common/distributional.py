r"""
Categorical return distributions (C51, Bellemare et al. 2017; D4PG, Barth-Maron et al. 2018).

A critic outputs logits over ``K`` atoms :math:`z_i = v_{min} + i \Delta z`. The target of a transition
is the distribution of :math:`r + \gamma^m (1 - d) Z(s', a')` projected back onto the atoms: each atom
:math:`\hat z_j = \text{clip}(r + \gamma^m (1 - d) z_j, v_{min}, v_{max})` gives its probability
:math:`p_j` to its two neighbouring atoms in proportion to closeness. Returns outside
:math:`[v_{min}, v_{max}]` are clipped to the bounds.
"""

import torch as th


def categorical_projection(
    next_probabilities: th.Tensor, rewards: th.Tensor, bootstrap_discounts: th.Tensor, atoms: th.Tensor
) -> th.Tensor:
    """
    Project the shifted and scaled next-state distribution onto the fixed support, vectorised.

    :param next_probabilities: ``p_j`` of the bootstrap distribution, shape ``(batch, K)``
    :param rewards: (n-step) rewards, shape ``(batch, 1)``
    :param bootstrap_discounts: ``gamma^m (1 - done)``, shape ``(batch, 1)`` (0 for terminal transitions)
    :param atoms: the support ``z``, shape ``(K,)``, evenly spaced and increasing
    :return: the projected target distribution, shape ``(batch, K)``; each row sums to 1
    """
    n_atoms = atoms.shape[0]
    v_min, v_max = atoms[0], atoms[-1]
    shifted = (rewards + bootstrap_discounts * atoms).clamp(v_min, v_max)
    # Position of each shifted atom on the support, in units of atoms: in [0, K - 1].
    position = (shifted - v_min) / (v_max - v_min) * (n_atoms - 1)
    lower = position.floor().clamp(max=n_atoms - 1)
    upper_weight = position - lower
    lower_index = lower.long()
    # On the last atom, upper_weight is 0: clamping its (unused) upper neighbour loses no mass.
    upper_index = (lower_index + 1).clamp(max=n_atoms - 1)
    projected = th.zeros_like(next_probabilities)
    projected.scatter_add_(1, lower_index, next_probabilities * (1.0 - upper_weight))
    projected.scatter_add_(1, upper_index, next_probabilities * upper_weight)
    return projected


def expected_value(logits: th.Tensor, atoms: th.Tensor) -> th.Tensor:
    """
    :param logits: logits over the atoms, shape ``(..., K)``
    :param atoms: the support, shape ``(K,)``
    :return: the distribution's mean, shape ``(...)``
    """
    return th.softmax(logits, dim=-1) @ atoms

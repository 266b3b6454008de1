"""TD7's value clipping: bootstrap values kept inside the range of the TD targets seen before the last target update."""

import math

import torch as th


class TargetValueRange:
    """
    The range that TD7 (Fujimoto et al. 2023, https://arxiv.org/abs/2306.02451, section 4.3) clips the bootstrap
    value ``min_k Q'_k(s', a')`` to: the smallest and largest TD target computed up to the last target update. It
    stops the target networks from extrapolating beyond the values their own data has produced (a guard against
    divergence with hard target updates). As in TD7 the range is ``[0, 0]`` until the first target update, and the
    extremes are those of the clipped targets, over all of training.

    The state is four floats, saved and loaded with the model.
    """

    def __init__(self) -> None:
        self.low = 0.0
        self.high = 0.0
        self.seen_low = math.inf
        self.seen_high = -math.inf

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``: what the bootstrap values are clipped to now."""
        return self.low, self.high

    def clip(self, next_outputs: th.Tensor) -> th.Tensor:
        """
        The target critics' scalar outputs clipped to :attr:`bounds`: the bootstrap ``min_k Q'_k`` computed from
        them is then the clipped one (clipping commutes with the minimum).
        """
        return next_outputs.clamp(self.low, self.high)

    def observe(self, target: th.Tensor) -> None:
        """Widen the extremes seen with a batch of TD targets (one device sync: two floats)."""
        low, high = th.aminmax(target.detach())
        self.seen_low = min(self.seen_low, float(low))
        self.seen_high = max(self.seen_high, float(high))

    def roll(self) -> None:
        """At a target update: clip to the extremes seen so far from now on."""
        if self.seen_low <= self.seen_high:
            self.low, self.high = self.seen_low, self.seen_high

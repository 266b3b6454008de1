"""Batch Renormalization (Ioffe 2017) as sb3-contrib's CrossQ uses it, with a faster batch variance on CPU."""

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d as ContribBatchRenorm1d


class BatchRenorm1d(ContribBatchRenorm1d):
    """
    sb3-contrib's ``BatchRenorm1d`` (same parameters, buffers and maths) with one change: the batch variance
    is the mean squared deviation from the batch mean, times ``n / (n - 1)`` (the unbiased estimate
    sb3-contrib's ``x.var(dim=0)`` gives), written out in elementwise ops and a sum, because PyTorch's CPU ``var``
    kernel over the batch dimension is several times slower than those, and CrossQ computes it for every BatchRenorm
    layer of every training-mode pass.

    Paper: https://arxiv.org/abs/1702.03275
    """

    def forward(self, x: th.Tensor) -> th.Tensor:
        if self.training:
            batch_mean = x.mean(dim=0)
            batch_var = (x - batch_mean).square().sum(dim=0) / (x.shape[0] - 1)
            custom_mean, custom_var = self._renormalized_statistics(batch_mean, batch_var)
            # Running statistics, as sb3-contrib updates them.
            self.ra_mean += self.momentum * (batch_mean.detach() - self.ra_mean)  # type: ignore[operator]
            self.ra_var += self.momentum * (batch_var.detach() - self.ra_var)  # type: ignore[operator]
            self.steps += 1  # type: ignore[operator, assignment]
        else:
            custom_mean, custom_var = self.ra_mean, self.ra_var  # type: ignore[assignment]
        x = (x - custom_mean[None]) / (custom_var[None] + self.eps).sqrt()
        return self.scale * x + self.bias if self.affine else x

    def _renormalized_statistics(self, batch_mean: th.Tensor, batch_var: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The batch statistics during warm-up; then corrected towards the running ones by ``r`` and ``d``."""
        if not self.steps > self.warmup_steps:  # type: ignore[operator]
            return batch_mean, batch_var
        batch_std = (batch_var + self.eps).sqrt()
        running_std = (self.ra_var + self.eps).sqrt()  # type: ignore[operator, union-attr]
        r = (batch_std / running_std).detach().clamp(1 / self.rmax, self.rmax)
        d = ((batch_mean - self.ra_mean) / running_std).detach().clamp(-self.dmax, self.dmax)  # type: ignore[operator]
        return batch_mean - d * batch_var.sqrt() / r, batch_var / r**2

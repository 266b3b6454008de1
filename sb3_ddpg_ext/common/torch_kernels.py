"""
The private torch kernels the fast backend calls, behind one release check, each beside its public equivalent.

``torch.ops.aten.threshold_backward`` and ``tanh_backward`` (ReLU's and tanh's backward in one kernel each),
``torch._foreach_lerp_`` (the Polyak averaging of every target tensor in one call) and ``torch._fused_adam_`` (Adam's
fused kernel without ``optimizer.step()``'s per-call Python, see :class:`~sb3_ddpg_ext.common.optimizer_step.OptimizerStep`)
are not public API: they are used only under the torch releases in :data:`TESTED_RELEASES`, and only together (side by
side against the public operations they replace, one run: ``benchmarks/results/throughput.md``). Elsewhere, or with
:data:`use_private_kernels` set to False, the public operations run; the tests run the fast backend both ways.
"""

import torch as th

# The releases whose private kernels the test suite has run (their signatures are not promised to stay).
TESTED_RELEASES = ((2, 13),)


def _release() -> tuple[int, int]:
    major, minor = th.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


AVAILABLE = _release() in TESTED_RELEASES and all(
    hasattr(namespace, name)
    for namespace, name in (
        (th, "_fused_adam_"),
        (th, "_fused_adamw_"),
        (th, "_foreach_lerp_"),
        (th.ops.aten, "threshold_backward"),
        (th.ops.aten, "tanh_backward"),
    )
)
# Read when a fast backend is built (and by the functions below at each call); False forces the public operations.
use_private_kernels = AVAILABLE


def relu_backward_(gradient: th.Tensor, output: th.Tensor) -> th.Tensor:
    """
    ReLU's backward in place: ``gradient`` where ``output > 0``, else 0. The public path overwrites ``output`` (with
    its sign: comparisons make bool tensors, whose CPU kernels are many times slower), so call it last on ``output``.
    """
    if use_private_kernels:
        return th.ops.aten.threshold_backward.grad_input(gradient, output, 0, grad_input=gradient)
    return gradient.mul_(output.sign_())


def tanh_backward(gradient: th.Tensor, output: th.Tensor) -> th.Tensor:
    """tanh's backward, ``gradient (1 - output^2)``, in a new tensor."""
    if use_private_kernels:
        return th.ops.aten.tanh_backward(gradient, output)
    return th.addcmul(gradient, gradient, output * output, value=-1.0)


def lerp_(targets: list[th.Tensor], sources: list[th.Tensor], weight: float) -> None:
    """``target += weight (source - target)`` for every pair, in place."""
    if use_private_kernels and targets:
        th._foreach_lerp_(targets, sources, weight)
        return
    for target, source in zip(targets, sources, strict=True):
        target.lerp_(source, weight)

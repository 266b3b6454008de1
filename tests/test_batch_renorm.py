"""Our BatchRenorm1d is sb3-contrib's, with the batch variance written out (faster on CPU)."""

import copy

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d as ContribBatchRenorm1d

from sb3_ddpg_ext.common.batch_renorm import BatchRenorm1d


def test_same_outputs_gradients_and_running_statistics_as_sb3_contrib_across_the_warm_up():
    th.manual_seed(0)
    reference = ContribBatchRenorm1d(6, momentum=0.1, warmup_steps=3)
    ours = BatchRenorm1d(6, momentum=0.1, warmup_steps=3)
    ours.load_state_dict(reference.state_dict())
    with th.no_grad():
        for layer in (ours, reference):
            layer.scale.mul_(1.5)
            layer.bias.add_(0.2)
    for step in range(8):  # steps 4-8 use the renormalized statistics
        inputs = th.randn(32, 6) * (1 + step) + step
        outputs = []
        for layer in (ours, reference):
            x = inputs.clone().requires_grad_()
            out = layer(x)
            (out * th.linspace(-1, 1, 6)).square().sum().backward()
            outputs.append((out.detach(), x.grad, layer.scale.grad.clone(), layer.bias.grad.clone()))
            layer.zero_grad()
        for ours_value, reference_value in zip(*outputs, strict=True):
            th.testing.assert_close(ours_value, reference_value, rtol=1e-5, atol=1e-5)
        for name, buffer in reference.named_buffers():
            th.testing.assert_close(dict(ours.named_buffers())[name], buffer, rtol=1e-5, atol=1e-6)
    evaluation = [copy.deepcopy(layer).eval()(inputs) for layer in (ours, reference)]
    th.testing.assert_close(*evaluation)
    assert int(ours.steps) == 8

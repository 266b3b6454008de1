"""The hand-derived passes of BatchRenorm and LayerNorm networks equal autograd's, in both BatchRenorm modes."""

import copy
from functools import partial

import pytest
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d as ContribBatchRenorm1d
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn

from sb3_ddpg_ext.common import renorm_kernels, torch_kernels
from sb3_ddpg_ext.common.batch_renorm import BatchRenorm1d
from sb3_ddpg_ext.common.lean_mlp import LeanMLP

# float32 sums in another order than autograd's: relative differences of a few 1e-6 on these sizes.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True, params=[True, False], ids=["compiled-renorm", "torch-renorm"])
def renorm_path(request, monkeypatch):
    """Every test on both paths of BatchRenorm's passes: the compiled loops and the torch reference."""
    monkeypatch.setattr(renorm_kernels, "use_compiled", request.param)
    return request.param


def _renorm_network(sizes, squash, warmup_steps, renorm_class=BatchRenorm1d, layer_norm=False, seed=0) -> nn.Sequential:
    th.manual_seed(seed)
    pre = [partial(renorm_class, warmup_steps=warmup_steps)]
    post = [nn.LayerNorm] if layer_norm else None
    network = nn.Sequential(
        *create_mlp(sizes[0], sizes[2], sizes[1], squash_output=squash, pre_linear_modules=pre, post_linear_modules=post)
    )
    with th.no_grad():  # parameters and statistics away from their initial values, so every term of the maths counts
        for layer in network:
            if isinstance(layer, ContribBatchRenorm1d):
                layer.scale.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
                layer.ra_mean.uniform_(-1.0, 1.0)  # with the unit-scale inputs: d clipped at d_max for some features
                layer.ra_var.uniform_(0.01, 4.0)  # r clipped at r_max for some
                layer.steps.fill_(5)
            if isinstance(layer, nn.LayerNorm):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
    return network


def _statistics(network: nn.Module) -> list[th.Tensor]:
    return [tensor for name, tensor in network.named_buffers() if name.split(".")[-1] in ("ra_mean", "ra_var", "steps")]


@pytest.mark.parametrize("renorm_class", [BatchRenorm1d, ContribBatchRenorm1d], ids=["ddpg-ext", "sb3-contrib"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("warmup_steps", [100, 2], ids=["warm-up", "renormalising"])
@pytest.mark.parametrize(
    "sizes,batch,squash,layer_norm",
    [((5, [16, 12], 3), 9, False, False), ((4, [32], 1), 64, True, False), ((6, [8, 8, 8], 2), 17, False, True)],
    ids=["two-hidden", "one-hidden-squashed", "three-hidden-layer-norm"],
)
def test_batch_renorm_forward_gradients_and_statistics_equal_autograd(
    sizes, batch, squash, layer_norm, warmup_steps, training, renorm_class
):
    network = _renorm_network(sizes, squash, warmup_steps, renorm_class, layer_norm)
    reference = copy.deepcopy(network).train(training)
    inputs = (th.randn(batch, sizes[0]) * 2.0 + 0.5).requires_grad_(True)
    output_gradients = th.randn(batch, sizes[2])

    expected = reference(inputs)
    expected.backward(output_gradients)
    lean = LeanMLP(network)
    outputs, activations = lean.forward(inputs.detach().t().contiguous(), training=training)
    input_gradients = lean.backward(activations, output_gradients.t(), input_rows=slice(1, None))

    th.testing.assert_close(outputs, expected.detach().t(), **TOLERANCE)
    for gradient, (name, parameter) in zip(lean.gradients, reference.named_parameters(), strict=True):
        th.testing.assert_close(gradient, parameter.grad, **TOLERANCE, msg=name)
    assert inputs.grad is not None and input_gradients is not None
    th.testing.assert_close(input_gradients, inputs.grad[:, 1:].t(), **TOLERANCE)
    for ours, theirs in zip(_statistics(network), _statistics(reference), strict=True):
        th.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_evaluation_passes_leave_the_running_statistics_and_step_count_alone():
    network = _renorm_network((5, [16], 2), squash=False, warmup_steps=2)
    before = [tensor.clone() for tensor in _statistics(network)]
    lean = LeanMLP(network)
    _, activations = lean.forward(th.randn(5, 8), training=False)
    lean.backward(activations, th.randn(2, 8), input_rows=slice(0, 5), parameter_gradients=False)
    assert all(th.equal(ours, old) for ours, old in zip(_statistics(network), before, strict=True))


def test_later_passes_see_the_parameters_and_statistics_as_they_change_in_place():
    # The passes keep views of the module's tensors from the first pass on: in-place changes (optimizer steps,
    # running statistics, the step count leaving warm-up) must show in the next pass.
    network = _renorm_network((5, [16, 12], 3), squash=False, warmup_steps=6)
    reference = copy.deepcopy(network)
    lean = LeanMLP(network)
    for training in (True, True, False, True, False):
        inputs = th.randn(9, 5) * 2.0 + 0.5
        output_gradients = th.randn(9, 3)
        reference.zero_grad()
        expected = reference.train(training)(inputs)
        expected.backward(output_gradients)
        outputs, activations = lean.forward(inputs.t().contiguous(), training=training)
        lean.backward(activations, output_gradients.t())
        th.testing.assert_close(outputs, expected.detach().t(), **TOLERANCE)
        for gradient, (name, parameter) in zip(lean.gradients, reference.named_parameters(), strict=True):
            th.testing.assert_close(gradient, parameter.grad, **TOLERANCE, msg=name)
        with th.no_grad():
            for ours, theirs in zip(network.parameters(), reference.parameters(), strict=True):
                ours.mul_(0.9).add_(0.05)
                theirs.mul_(0.9).add_(0.05)
    for ours, theirs in zip(_statistics(network), _statistics(reference), strict=True):
        th.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_training_pass_moves_the_statistics_by_momentum_towards_the_batch_ones():
    network = _renorm_network((3, [4], 1), squash=False, warmup_steps=100)
    first = network[0]
    mean, var = first.ra_mean.clone(), first.ra_var.clone()
    inputs = th.randn(3, 50)
    LeanMLP(network).forward(inputs, training=True)
    th.testing.assert_close(first.ra_mean, mean + first.momentum * (inputs.mean(dim=1) - mean))
    th.testing.assert_close(first.ra_var, var + first.momentum * (inputs.var(dim=1) - var))
    assert int(first.steps) == 6


def test_input_gradients_alone_leave_the_normalisation_gradients_untouched():
    lean = LeanMLP(_renorm_network((5, [16], 2), squash=True, warmup_steps=2))
    before = [gradient.clone() for gradient in lean.gradients]
    _, activations = lean.forward(th.randn(5, 8), training=True)
    input_gradients = lean.backward(activations, th.randn(2, 8), input_rows=slice(3, 5), parameter_gradients=False)
    assert input_gradients is not None and input_gradients.shape == (2, 8)
    assert all(th.equal(gradient, old) for gradient, old in zip(lean.gradients, before, strict=True))


@pytest.mark.parametrize(
    "network",
    [
        nn.Sequential(BatchRenorm1d(4, warmup_steps=1), nn.ReLU(), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(4, 8), BatchRenorm1d(8), nn.ReLU(), nn.Linear(8, 1)),  # after the linear layer
        nn.Sequential(ContribBatchRenorm1d(4, affine=False), nn.Linear(4, 1)),
        nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 1)),
    ],
    ids=["no-linear", "after-linear", "not-affine", "batch-norm"],
)
def test_normalisations_the_passes_do_not_know_are_refused(network):
    assert not LeanMLP.supports(network)


@pytest.mark.parametrize("private_kernels", [True, False], ids=["private-kernels", "public-kernels"])
def test_a_dead_relu_feature_gives_autograds_gradients_not_nan(private_kernels, monkeypatch):
    if private_kernels and not torch_kernels.AVAILABLE:
        pytest.skip("the private kernels exist under the tested torch releases only")
    monkeypatch.setattr(torch_kernels, "use_private_kernels", private_kernels)
    network = _renorm_network((4, [8, 8], 1), squash=False, warmup_steps=2)  # renormalising
    with th.no_grad():  # hidden feature 3 is 0 for every input: no variance in the batch for the next BatchRenorm
        network[1].weight[3].zero_()
        network[1].bias[3] = -1.0
    reference = copy.deepcopy(network)
    inputs = th.randn(16, 4)
    output_gradients = th.randn(16, 1)
    reference(inputs).backward(output_gradients)
    lean = LeanMLP(network)
    _, activations = lean.forward(inputs.t().contiguous(), training=True)
    lean.backward(activations, output_gradients.t())
    for gradient, parameter in zip(lean.gradients, reference.parameters(), strict=True):
        assert th.isfinite(gradient).all()
        th.testing.assert_close(gradient, parameter.grad, **TOLERANCE)


def test_a_nan_in_the_batch_reaches_the_outputs_and_gradients_as_autograds_does():
    network = _renorm_network((4, [8], 1), squash=False, warmup_steps=2)
    inputs = th.randn(16, 4)
    inputs[3, 1] = float("nan")
    reference = copy.deepcopy(network)
    expected = reference(inputs)
    expected.backward(th.ones_like(expected))
    lean = LeanMLP(network)
    outputs, activations = lean.forward(inputs.t().contiguous(), training=True)
    lean.backward(activations, th.ones(1, 16))
    assert th.equal(th.isnan(outputs), th.isnan(expected.detach().t()))
    for gradient, parameter in zip(lean.gradients, reference.parameters(), strict=True):
        assert th.equal(th.isnan(gradient), th.isnan(parameter.grad))

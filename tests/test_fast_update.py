"""The fast backend (hand-derived gradients) gives the specification's update, to float precision."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.common import torch_kernels
from sb3_ddpg_ext.common.lean_mlp import LeanMLP
from sb3_ddpg_ext.common.optimizer_step import OptimizerStep
from sb3_ddpg_ext.ddpg_ext.fast_sale import FastSaleUpdate
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate

FAST = dict(learning_starts=100, batch_size=32, buffer_size=2_000, seed=4)
# TD7's update settings beside its networks: LAP, TD3's smoothing and delay, hard target copies, value clipping.
TD7_UPDATE = dict(
    replay_buffer_class=PrioritizedReplayBuffer,
    replay_buffer_kwargs=dict(priority="lap", min_priority=1.0, alpha=0.4),
    policy_delay=2,
    target_policy_noise=0.2,
    target_noise_clip=0.5,
    tau=1.0,
    target_update_interval=7,
    target_value_clipping=True,
)


def _mlp(squash: bool, sizes=(5, [16, 12], 3), layer_norm: bool = False, activation=nn.ReLU) -> nn.Sequential:
    th.manual_seed(0)
    post = [nn.LayerNorm] if layer_norm else None
    network = nn.Sequential(
        *create_mlp(sizes[0], sizes[2], sizes[1], activation, squash_output=squash, post_linear_modules=post)
    )
    with th.no_grad():  # LayerNorm's affine parameters away from their (1, 0) initialisation
        for layer in network:
            if isinstance(layer, nn.LayerNorm):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
    return network


@pytest.mark.parametrize("activation", [nn.ReLU, nn.ELU])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("contiguous_inputs", [False, True])
@pytest.mark.parametrize("squash", [False, True])
def test_forward_and_gradients_equal_autograd(squash, contiguous_inputs, layer_norm, activation):
    network = _mlp(squash, layer_norm=layer_norm, activation=activation)
    lean = LeanMLP(network)
    inputs = th.randn(9, 5, requires_grad=True)
    output_gradients = th.randn(9, 3)

    expected = network(inputs)
    expected.backward(output_gradients)
    feature_major = inputs.detach().t()  # LeanMLP works on (features, batch): a view, or a contiguous copy
    outputs, activations = lean.forward(feature_major.contiguous() if contiguous_inputs else feature_major)
    input_gradients = lean.backward(activations, output_gradients.t(), input_rows=slice(2, None))

    th.testing.assert_close(outputs, expected.detach().t())
    for gradient, parameter in zip(lean.gradients, network.parameters(), strict=True):
        th.testing.assert_close(gradient, parameter.grad)
    assert inputs.grad is not None and input_gradients is not None
    th.testing.assert_close(input_gradients, inputs.grad[:, 2:].t())


def test_input_gradients_alone_leave_the_parameter_gradients_untouched():
    lean = LeanMLP(_mlp(squash=False))
    _, activations = lean.forward(th.randn(5, 4))
    before = [gradient.clone() for gradient in lean.gradients]
    input_gradients = lean.backward(activations, th.randn(3, 4), input_rows=slice(0, 5), parameter_gradients=False)
    assert input_gradients is not None and input_gradients.shape == (5, 4)
    assert all(th.equal(gradient, old) for gradient, old in zip(lean.gradients, before, strict=True))


def test_forward_follows_in_place_parameter_updates():
    network = _mlp(squash=True)
    lean = LeanMLP(network)
    with th.no_grad():
        for parameter in network.parameters():
            parameter.mul_(0.5)
    inputs = th.randn(3, 5)
    th.testing.assert_close(lean.forward(inputs.t())[0], network(inputs).detach().t())


@pytest.mark.parametrize(
    "network",
    [
        nn.Sequential(*create_mlp(4, 1, [8], activation_fn=nn.Tanh)),
        nn.Sequential(nn.Linear(4, 8), nn.ELU(alpha=0.5), nn.Linear(8, 1)),
        nn.Sequential(*create_mlp(4, 1, [8], pre_linear_modules=[nn.LayerNorm])),
        nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False), nn.ReLU(), nn.Linear(8, 1)),
        nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1)),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU()),
        nn.Linear(4, 1),
    ],
)
def test_networks_that_need_autograd_are_refused(network):
    assert not LeanMLP.supports(network)
    with pytest.raises(ValueError, match="Linear/ReLU"):
        LeanMLP(network)


class ReachEnv(gym.Env):
    """A point in 3-D pushed by a 3-D action toward the origin: several action dimensions, no extra dependency."""

    observation_space = spaces.Box(-10.0, 10.0, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        self._steps = 0
        return self._position.copy(), {}

    def step(self, action):
        self._position = np.clip(self._position + 0.1 * action, -10.0, 10.0).astype(np.float32)
        self._steps += 1
        return self._position.copy(), -float(np.linalg.norm(self._position)), False, self._steps == 50, {}


def _pair(env_id="Pendulum-v1", **kwargs):
    """A lean model and an autograd model with the same weights, optimizer state and replay buffer."""
    env = ReachEnv() if env_id == "reach" else env_id
    reference = DDPGExt("MlpPolicy", env, lean_update=False, **FAST, **kwargs)
    reference.learn(150)
    model = DDPGExt("MlpPolicy", env, **FAST, **kwargs)
    model.policy.load_state_dict(reference.policy.state_dict())
    optimizers = zip(model.policy.optimizers().values(), reference.policy.optimizers().values(), strict=True)
    for optimizer, reference_optimizer in optimizers:  # SALE's encoder's too
        optimizer.load_state_dict(copy.deepcopy(reference_optimizer.state_dict()))
    model.replay_buffer = copy.deepcopy(reference.replay_buffer)
    model._n_updates = reference._n_updates
    model._value_range = copy.deepcopy(reference._value_range)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model, reference


def _record_priorities(buffer) -> list[th.Tensor]:
    """The priorities each update hands to a prioritized buffer (none for a uniform one)."""
    log: list[th.Tensor] = []
    if hasattr(buffer, "update_priorities"):
        update = buffer.update_priorities

        def recording(indices, values):
            log.append(values.clone())
            update(indices, values)

        buffer.update_priorities = recording
    return log


@pytest.mark.parametrize(
    "kwargs",
    [
        # SimBa's residual networks and running observation statistics (TD3's update, the `simba` preset's).
        dict(
            policy_kwargs=dict(network="simba", net_arch=dict(pi=[16], qf=[16, 16]), n_critics=2),
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
        ),
        dict(policy_kwargs=dict(net_arch=[32, 32], normalize_observations=True)),
        # TD7: SALE's embeddings (the encoder itself trains on autograd in both), ELU critics and encoder, the actor
        # ascending the mean of both critics, LAP, hard target copies (and encoder refreshes), clipping.
        dict(
            policy_kwargs=dict(
                net_arch=[32, 32],
                n_critics=2,
                critic_activation_fn=nn.ELU,
                actor_q="mean",
                sale=True,
                sale_embedding_dim=16,
                sale_net_arch=[32, 32],
            ),
            **TD7_UPDATE,
        ),
        # TD7 without SALE: ELU critics, the actor ascending the mean of both critics, LAP, hard targets, clipping.
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2, critic_activation_fn=nn.ELU, actor_q="mean"),
            **TD7_UPDATE,
        ),
        # CrossQ (the `ext` preset's update): BatchRenorm actor and critics, one joint critic pass, no target networks;
        # the renormalisation starts after 60 training passes, during the 20 updates compared.
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2, batch_norm=True, renorm_warmup_steps=60),
            policy_delay=3,
            n_steps=3,
        ),
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2, batch_norm=True, target_networks=True, renorm_warmup_steps=40),
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
        ),
        # LayerNorm critics (and actor): LayerNorm's backward derived by hand too.
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2, layer_norm=True, actor_layer_norm=True),
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
        ),
        dict(policy_kwargs=dict(net_arch=[32, 32])),
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2),
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
        ),
        # Target policy smoothing draws its noise per (sample, action): the lean update's layout must not move it.
        dict(
            env_id="reach",
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2),
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
        ),
        dict(policy_kwargs=dict(net_arch=[32, 32], n_critics=3), policy_delay=2),
        dict(policy_kwargs=dict(net_arch=[32, 32]), replay_buffer_class=PrioritizedReplayBuffer, n_steps=3),
        dict(policy_kwargs=dict(net_arch=[32, 32], optimizer_class=th.optim.SGD)),
        dict(
            policy_kwargs=dict(net_arch=[32, 32], critic="categorical", n_atoms=11, v_min=-50.0, v_max=10.0, n_critics=2),
            replay_buffer_class=PrioritizedReplayBuffer,
            n_steps=3,
        ),
        # TD7's update parts: LAP (Huber loss, max over critics), hard target copies, value clipping.
        dict(
            policy_kwargs=dict(net_arch=[32, 32], n_critics=2),
            replay_buffer_class=PrioritizedReplayBuffer,
            replay_buffer_kwargs=dict(priority="lap", min_priority=0.5),
            policy_delay=2,
            tau=1.0,
            target_update_interval=5,
            target_value_clipping=True,
        ),
    ],
    ids=[
        "simba",
        "mlp-normalized-observations",
        "td7",
        "td7-without-sale",
        "crossq-3-step",
        "batch-renorm-with-targets",
        "td3-layer-norm",
        "ddpg",
        "td3",
        "td3-three-actions",
        "three-critics",
        "prioritized-3-step",
        "sgd",
        "categorical-prioritized",
        "lap-hard-targets-clipped",
    ],
)
@pytest.mark.parametrize("private_kernels", [True, False], ids=["private-kernels", "public-kernels"])
def test_the_fast_backend_gives_the_specifications_update_on_identical_batches(kwargs, private_kernels, monkeypatch):
    if private_kernels and not torch_kernels.AVAILABLE:
        pytest.skip("the private kernels exist under the tested torch releases only")
    monkeypatch.setattr(torch_kernels, "use_private_kernels", private_kernels)
    model, reference = _pair(**kwargs)
    assert isinstance(model._current_update_setup().backend, (FastUpdate, FastSaleUpdate))
    assert isinstance(reference._current_update_setup().backend, AutogradUpdate)
    # The same batches for both: with prioritized replay, float-level differences in the priorities would
    # otherwise change which transitions later updates draw.
    batches: list = []
    draw = reference.replay_buffer.sample
    reference.replay_buffer.sample = lambda *args, **kwargs: batches.append(draw(*args, **kwargs)) or batches[-1]
    replayed = iter(batches)
    model.replay_buffer.sample = lambda *args, **kwargs: next(replayed)
    priorities = [_record_priorities(algorithm.replay_buffer) for algorithm in (reference, model)]
    for algorithm in (reference, model):
        th.manual_seed(0)  # the same smoothing noise
        algorithm.train(gradient_steps=20, batch_size=32)
    for (key, ours), theirs in zip(model.policy.state_dict().items(), reference.policy.state_dict().values(), strict=True):
        th.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6, msg=key)
    # The errors are differences of Q-values near 10: their float32 resolution, after 20 updates, is about 1e-5.
    for theirs, ours in zip(*priorities, strict=True):
        th.testing.assert_close(ours, theirs, rtol=1e-4, atol=2e-5)
    assert len(priorities[1]) == (20 if "replay_buffer_class" in kwargs else 0)
    error_name = "cross_entropy_mean" if "critic" in kwargs["policy_kwargs"] else "td_error_mean"
    for name in ("critic_loss", "actor_loss", "q_mean", error_name):
        assert model.logger.name_to_value[f"train/{name}"] == pytest.approx(
            reference.logger.name_to_value[f"train/{name}"], rel=1e-4
        )


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(activation_fn=nn.SiLU),
        dict(activation_fn=nn.Tanh),
        dict(activation_fn=nn.LeakyReLU),
    ],
)
def test_policies_the_fast_backend_cannot_run_train_with_the_specification(policy_kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], **policy_kwargs), **FAST)
    assert isinstance(model._current_update_setup().backend, AutogradUpdate)
    model.learn(120)


def test_the_fast_backend_is_rebuilt_on_load_and_continues_from_the_saved_optimizer_state(tmp_path):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), **FAST)
    model.learn(150)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = DDPGExt.load(tmp_path / "model")
    loaded.load_replay_buffer(tmp_path / "buffer")
    backends = [algorithm._current_update_setup().backend for algorithm in (model, loaded)]
    assert isinstance(backends[1], FastUpdate) and backends[1] is not backends[0]
    loaded.set_logger(Logger(folder=None, output_formats=[]))
    model.set_logger(Logger(folder=None, output_formats=[]))
    for algorithm in (model, loaded):
        np.random.seed(1)
        algorithm.train(gradient_steps=5, batch_size=32)
    for ours, theirs in zip(loaded.policy.parameters(), model.policy.parameters(), strict=True):
        th.testing.assert_close(ours, theirs)


def test_lean_update_must_be_a_bool():
    with pytest.raises(TypeError, match="`lean_update` must be a bool, got 'yes'"):
        DDPGExt("MlpPolicy", "Pendulum-v1", lean_update="yes")


def test_an_optimizer_over_other_parameters_keeps_the_autograd_path():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), **FAST)
    extra = th.nn.Parameter(th.zeros(3))
    assert isinstance(model._current_update_setup().backend, FastUpdate)
    model.critic.optimizer.add_param_group({"params": [extra]})
    assert isinstance(model._current_update_setup().backend, AutogradUpdate)
    model.learn(120)


def test_state_made_during_a_fast_update_outlives_its_inference_mode():
    # The first fast update creates the optimizer state and the hidden-layer buffers inside inference mode.
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), **FAST)
    model.learn(FAST["learning_starts"] + 2)
    fast = model._update_setup.backend
    assert isinstance(fast, FastUpdate)
    kept = [fast.actor._hidden[0], fast.critics[0]._hidden_gradients[0]]
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        kept += [tensor for state in optimizer.state.values() for tensor in state.values()]
    assert not any(tensor.is_inference() for tensor in kept)
    # Autograd and the optimizers' own step can take over from there.
    model.lean_update = False
    model.train(gradient_steps=2, batch_size=32)
    assert isinstance(model._update_setup.backend, AutogradUpdate)


@pytest.mark.parametrize(
    "optimizer_class,kwargs",
    [
        (th.optim.Adam, dict(fused=True)),
        (th.optim.Adam, dict(fused=True, amsgrad=True, weight_decay=0.01)),
        (th.optim.AdamW, dict(fused=True, weight_decay=0.1)),
        (th.optim.SGD, dict(momentum=0.9)),
    ],
)
def test_optimizer_step_equals_optimizer_step_and_survives_a_state_reload(optimizer_class, kwargs):
    def build():
        network = _mlp(squash=False)
        return network, optimizer_class(network.parameters(), lr=1e-2, **kwargs)

    network, optimizer = build()
    reference, reference_optimizer = build()
    parameters = list(network.parameters())
    gradients = [th.zeros_like(parameter) for parameter in parameters]
    step = OptimizerStep(optimizer, parameters, gradients)
    assert step.direct == (optimizer_class is not th.optim.SGD)
    for index in range(6):
        if index == 3:  # as when a saved model is loaded: new state tensors
            state = copy.deepcopy(reference_optimizer.state_dict())
            optimizer.load_state_dict(state)
        for gradient, parameter in zip(gradients, reference.parameters(), strict=True):
            gradient.copy_(th.randn_like(gradient))
            parameter.grad = gradient.clone()
        step.step()
        reference_optimizer.step()
        for ours, theirs in zip(parameters, reference.parameters(), strict=True):
            th.testing.assert_close(ours, theirs)
    assert int(optimizer.state[parameters[0]].get("step", 6)) == 6
    # The optimizer's own step still works on the state the direct steps left (e.g. packed step counts).
    for parameter, reference_parameter in zip(parameters, reference.parameters(), strict=True):
        parameter.grad = reference_parameter.grad = th.ones_like(parameter)
    optimizer.step()
    reference_optimizer.step()
    for ours, theirs in zip(parameters, reference.parameters(), strict=True):
        th.testing.assert_close(ours, theirs)
    assert all(int(optimizer.state[parameter].get("step", 7)) == 7 for parameter in parameters)


def test_optimizer_step_needs_the_optimizer_parameters_in_order():
    network = _mlp(squash=False)
    parameters = list(network.parameters())
    optimizer = th.optim.Adam(parameters, fused=True)
    with pytest.raises(ValueError, match="parameter group"):
        OptimizerStep(optimizer, parameters[::-1], [th.zeros_like(parameter) for parameter in parameters[::-1]])


@pytest.mark.parametrize("optimizer_class,kwargs", [(th.optim.Adam, dict(fused=True)), (th.optim.AdamW, dict(fused=True))])
def test_the_public_optimizer_path_equals_the_direct_fused_kernel(optimizer_class, kwargs):
    networks = [_mlp(squash=False) for _ in range(2)]
    optimizers = [optimizer_class(network.parameters(), lr=1e-2, **kwargs) for network in networks]
    gradients = [[th.zeros_like(parameter) for parameter in network.parameters()] for network in networks]
    steps = [
        OptimizerStep(optimizer, list(network.parameters()), grads, allow_direct=allow)
        for optimizer, network, grads, allow in zip(optimizers, networks, gradients, (True, False), strict=True)
    ]
    assert not steps[1].direct
    for _ in range(4):
        noise = [th.randn_like(gradient) for gradient in gradients[0]]
        for grads in gradients:
            for gradient, value in zip(grads, noise, strict=True):
                gradient.copy_(value)
        for step in steps:
            step.step()
    for ours, theirs in zip(networks[0].parameters(), networks[1].parameters(), strict=True):
        th.testing.assert_close(ours, theirs)


@pytest.mark.skipif(not torch_kernels.AVAILABLE, reason="the private kernels exist under the tested torch releases only")
@pytest.mark.parametrize("squash", [False, True])
def test_the_public_kernels_give_the_private_kernels_results(squash, monkeypatch):
    results = []
    for private in (True, False):
        monkeypatch.setattr(torch_kernels, "use_private_kernels", private)
        th.manual_seed(0)
        network = _mlp(squash)
        lean = LeanMLP(network)
        outputs, activations = lean.forward(th.randn(5, 9))
        lean.backward(activations, th.randn(3, 9))
        targets, sources = [th.randn(4, 3), th.randn(2)], [th.randn(4, 3), th.randn(2)]
        torch_kernels.lerp_(targets, sources, 0.3)
        results.append([outputs, *lean.gradients, *targets])
    for private, public in zip(*results, strict=True):
        th.testing.assert_close(public, private)

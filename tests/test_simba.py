"""SimBa networks and running observation normalisation in DDPGExt's policies."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from torch import nn

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.common.lean_simba import LeanSimba
from sb3_ddpg_ext.common.networks import ResidualBlock, RunningObservationNorm, simba_network
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate

SMALL = dict(network="simba", net_arch=dict(pi=[16], qf=[24, 24]))
FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000, seed=7)


def _model(env="Pendulum-v1", steps=80, policy_kwargs=None, **kwargs):
    model = DDPGExt("MlpPolicy", env, policy_kwargs={**SMALL, **(policy_kwargs or {})}, **{**FAST, **kwargs})
    model.learn(steps)
    return model


def test_a_simba_network_is_embedding_residual_blocks_final_layer_norm_and_head():
    network = simba_network(5, 3, [8, 8], squash_output=True)
    kinds = [type(layer) for layer in network]
    assert kinds == [nn.Linear, ResidualBlock, ResidualBlock, nn.LayerNorm, nn.Linear, nn.Tanh]
    block = network[1]
    assert (block.inner.in_features, block.inner.out_features, block.outer.out_features) == (8, 32, 8)
    x = th.randn(4, 8)
    th.testing.assert_close(block(x), x + block.outer(th.relu(block.inner(block.layer_norm(x)))))


@pytest.mark.parametrize("net_arch", [[], [64, 32], [0]])
def test_simba_blocks_of_one_width_only(net_arch):
    with pytest.raises(ValueError, match=r"`net_arch` of a SimBa network lists its residual blocks"):
        simba_network(5, 3, net_arch)


def test_the_running_statistics_are_the_mean_and_variance_of_the_batches_merged():
    norm = RunningObservationNorm(3)
    batches = [th.randn(n, 3) * 3 + 2 for n in (1, 7, 20)]
    for batch in batches:
        norm.update(batch)
    everything = th.cat(batches).double()
    th.testing.assert_close(norm.running_mean.double(), everything.mean(0), rtol=1e-4, atol=1e-4)
    th.testing.assert_close(norm.running_var.double(), everything.var(0, unbiased=False), rtol=1e-4, atol=1e-4)
    th.testing.assert_close(
        norm(everything.float()), (everything.float() - norm.running_mean) / th.sqrt(norm.running_var + 1e-8)
    )


def test_the_statistics_follow_the_collected_observations_and_are_shared_by_every_network():
    model = _model(policy_kwargs=dict(n_critics=2))
    policy = model.policy
    norm = policy.observation_norm
    assert norm.running_count.item() == pytest.approx(80, abs=1e-3)  # one per env step, warm-up included
    for network in (policy.actor, policy.actor_target, policy.critic, policy.critic_target):
        assert network.features_extractor.normalizer is norm
    assert float(norm.running_var[2]) > 0.5 and isinstance(model._update_setup.backend, FastUpdate)


def test_running_observation_statistics_are_frozen_in_evaluation_and_training_and_survive_save_load(tmp_path):
    model = _model()
    norm = model.policy.observation_norm
    before = {name: buffer.clone() for name, buffer in norm.named_buffers()}
    evaluate_policy(model, model.get_env(), n_eval_episodes=1)
    model.predict(np.zeros(3, dtype=np.float32))
    model.train(gradient_steps=3, batch_size=32)
    assert all(th.equal(buffer, before[name]) for name, buffer in norm.named_buffers())
    observations = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    model.save(tmp_path / "simba")
    loaded = DDPGExt.load(tmp_path / "simba")
    loaded_norm = loaded.policy.observation_norm
    assert all(th.equal(buffer, before[name]) for name, buffer in loaded_norm.named_buffers())
    assert loaded.policy.actor.features_extractor.normalizer is loaded_norm
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(policy_kwargs=dict(n_critics=2), policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5, n_steps=3),
        dict(replay_buffer_class=PrioritizedReplayBuffer),
        dict(replay_buffer_class=PrioritizedReplayBuffer, replay_buffer_kwargs=dict(priority="lap")),
        dict(policy_kwargs=dict(critic="categorical", n_atoms=11, v_min=-50.0, v_max=0.0)),
        dict(policy_kwargs=dict(target_networks=False)),
        dict(policy_kwargs=dict(network="mlp", normalize_observations=True, net_arch=[16])),
        dict(policy_kwargs=dict(normalize_observations=False)),
    ],
    ids=["td3-3-step", "per", "lap", "categorical", "no-target-networks", "mlp-normalized", "simba-unnormalized"],
)
def test_simba_composes_with_the_other_extensions(kwargs):
    model = _model(**kwargs)
    assert model._n_updates == 30
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())
    assert hasattr(model.policy, "observation_norm") == model.policy.normalize_observations


def test_several_envs_update_the_statistics_with_every_env():
    model = _model(env=make_vec_env("Pendulum-v1", n_envs=2, seed=0), steps=80)
    assert model.policy.observation_norm.running_count.item() == pytest.approx(80, abs=1e-3)  # 40 steps x 2 envs


@pytest.mark.parametrize(
    ("policy_kwargs", "pattern"),
    [
        (dict(network="resnet"), r"`network` must be one of \['mlp', 'simba'\], got 'resnet'"),
        (dict(network="simba", layer_norm=True), r"`network='simba'` has its own LayerNorms and ReLUs: remove layer_norm"),
        (dict(network="simba", batch_norm=True), r"remove batch_norm=True"),
        (dict(network="simba", activation_fn=nn.Tanh), r"remove activation_fn="),
        (dict(network="simba", net_arch=[64, 32]), r"one width repeated"),
        (dict(network="simba", critic_activation_fn=nn.ELU), r"remove critic_activation_fn="),
        (dict(normalize_observations="yes"), r"`normalize_observations` must be a bool or None, got 'yes'"),
    ],
)
def test_bad_network_settings_are_refused_naming_the_parameter(policy_kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


def test_observation_normalisation_needs_a_box_observation_space():
    env = SimpleMultiObsEnv(random_start=False, discrete_actions=False)
    with pytest.raises(ValueError, match=r"`normalize_observations=True` needs a non-image Box observation space"):
        DDPGExt("MultiInputPolicy", env, policy_kwargs=dict(network="simba"))


def test_simba_defaults_are_simbas_ddpg_sizes():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(network="simba"))
    actor_blocks = [layer for layer in model.actor.mu if isinstance(layer, ResidualBlock)]
    critic_blocks = [layer for layer in model.critic.q_networks[0] if isinstance(layer, ResidualBlock)]
    assert [block.layer_norm.normalized_shape[0] for block in actor_blocks] == [128]
    assert [block.layer_norm.normalized_shape[0] for block in critic_blocks] == [512, 512]


@pytest.mark.parametrize("squash", [False, True])
@pytest.mark.parametrize("blocks", [[8], [8, 8, 8]])
def test_simbas_hand_derived_passes_equal_autograd(blocks, squash):
    th.manual_seed(0)
    network = simba_network(5, 3, blocks, squash_output=squash)
    with th.no_grad():  # LayerNorm's affine parameters and the biases away from their initialisation
        for name, parameter in network.named_parameters():
            if "bias" in name or "layer_norm" in name or name.startswith(str(len(blocks) + 1)):
                parameter.add_(th.randn_like(parameter) * 0.3)
    inputs = th.randn(7, 5, requires_grad=True)
    output_gradients = th.randn(7, 3)
    expected = network(inputs)
    expected.backward(output_gradients)
    lean = LeanSimba(network)
    outputs, activations = lean.forward(inputs.detach().t().contiguous())
    input_gradients = lean.backward(activations, output_gradients.t(), input_rows=slice(2, None))
    th.testing.assert_close(outputs, expected.detach().t())
    for gradient, (name, parameter) in zip(lean.gradients, network.named_parameters(), strict=True):
        th.testing.assert_close(gradient, parameter.grad, msg=name)
    assert inputs.grad is not None and input_gradients is not None
    th.testing.assert_close(input_gradients, inputs.grad[:, 2:].t())
    assert LeanSimba.supports(network) and not LeanSimba.supports(nn.Sequential(nn.Linear(5, 3)))

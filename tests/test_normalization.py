"""LayerNorm critics and actors, and the CrossQ mode: BatchRenorm, no target networks, joint forward."""

import numpy as np
import pytest
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from update_helpers import specification

from sb3_ddpg_ext import DDPGExt, PrioritizedDictReplayBuffer
from sb3_ddpg_ext.common.torch_utils import evaluation_mode

FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000, seed=0)
CROSSQ = dict(net_arch=[16], batch_norm=True, renorm_warmup_steps=10)


def _modules(network, module_class):
    return [module for module in network.modules() if isinstance(module, module_class)]


@pytest.mark.parametrize("actor_layer_norm", [False, True])
def test_layer_norm_after_each_hidden_layer(actor_layer_norm):
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[16, 8], n_critics=2, layer_norm=True, actor_layer_norm=actor_layer_norm),
        **FAST,
    )
    layer_norms = _modules(model.critic.qf1, th.nn.LayerNorm)
    assert [norm.normalized_shape for norm in layer_norms] == [(16,), (8,)]
    assert len(_modules(model.critic_target, th.nn.LayerNorm)) == 4
    assert len(_modules(model.actor, th.nn.LayerNorm)) == (2 if actor_layer_norm else 0)
    model.learn(100)


def test_crossq_has_no_target_networks_and_batch_renorm_everywhere():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(CROSSQ, n_critics=2), **FAST)
    assert model.actor_target is None and model.critic_target is None
    assert model.policy.actor_target is None and not model.policy.target_networks
    assert not any("target" in key for key in model.policy.state_dict())
    # Before each linear layer, the output layer included.
    assert len(_modules(model.actor, BatchRenorm1d)) == 2 and len(_modules(model.critic, BatchRenorm1d)) == 4
    model.learn(120)
    assert model._n_updates == 70


def _statistics(network):
    return [module.ra_mean.clone() for module in _modules(network, BatchRenorm1d)]


def test_batch_renorm_statistics_change_only_in_train_mode():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=CROSSQ, **{**FAST, "learning_starts": 100})
    # Collection (eval mode) does not touch the statistics.
    actor_before, critic_before = _statistics(model.actor), _statistics(model.critic)
    model.learn(100)
    assert not model.policy.training and not model.actor.training
    assert all(th.equal(a, b) for a, b in zip(actor_before, _statistics(model.actor), strict=True))
    assert all(th.equal(a, b) for a, b in zip(critic_before, _statistics(model.critic), strict=True))
    # One update: the critic's statistics (joint forward) and the actor's (actor loss) move.
    model.train(gradient_steps=1, batch_size=32)
    assert all(not th.equal(a, b) for a, b in zip(critic_before, _statistics(model.critic), strict=True))
    assert all(not th.equal(a, b) for a, b in zip(actor_before, _statistics(model.actor), strict=True))
    # Predicting (eval mode) leaves them alone again.
    after = _statistics(model.actor)
    model.predict(np.zeros(3, dtype=np.float32))
    assert all(th.equal(a, b) for a, b in zip(after, _statistics(model.actor), strict=True))


def test_joint_forward_covers_both_batches():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(CROSSQ, renorm_warmup_steps=10**6), **FAST)
    model.learn(60)
    batch = model.replay_buffer.sample(32)
    model.policy.set_training_mode(True)
    first = _modules(model.critic, BatchRenorm1d)[0]
    before = first.ra_mean.clone()
    specification(model).critic_outputs(batch)
    with th.no_grad(), evaluation_mode(model.actor):
        next_actions = model.actor(batch.next_observations)
    joint = th.cat([th.cat([batch.observations, batch.actions], 1), th.cat([batch.next_observations, next_actions], 1)])
    # The running mean moved towards the mean of the 64 joint inputs.
    th.testing.assert_close(first.ra_mean, before + first.momentum * (joint.mean(0) - before))


def test_crossq_save_load_keeps_statistics(tmp_path):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=CROSSQ, **FAST)
    model.learn(150)
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.critic_target is None
    for key, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, loaded.policy.state_dict()[key]), key
    assert any("ra_var" in key for key in loaded.policy.state_dict())
    observations = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(observations)[0], loaded.predict(observations)[0])
    loaded.learn(50, reset_num_timesteps=False)


def test_crossq_with_dict_observations_categorical_critic_per_and_vectorized_envs():
    model = DDPGExt(
        "MultiInputPolicy",
        make_vec_env(lambda: SimpleMultiObsEnv(discrete_actions=False), n_envs=2),
        policy_kwargs=dict(CROSSQ, critic="categorical", n_atoms=11, v_min=-5.0, v_max=5.0, layer_norm=True),
        replay_buffer_class=PrioritizedDictReplayBuffer,
        n_steps=3,
        **FAST,
    )
    model.learn(200)
    assert model._n_updates == 75 and model.critic_target is None


@pytest.mark.parametrize(
    "policy_kwargs,pattern",
    [
        (dict(layer_norm="yes"), r"`layer_norm` must be a bool, got 'yes'"),
        (dict(batch_norm=True, batch_norm_momentum=0.0), r"`batch_norm_momentum` must be in \(0, 1\], got 0.0"),
        (dict(batch_norm=True, renorm_warmup_steps=-1), r"`renorm_warmup_steps` must be an integer >= 0, got -1"),
    ],
)
def test_invalid_normalization_settings(policy_kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)

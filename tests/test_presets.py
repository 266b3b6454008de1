"""Every preset builds, trains and round-trips save/load with identical predictions."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.noise import NormalActionNoise

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.ddpg_ext.critics import CategoricalCritic
from sb3_ddpg_ext.experiments.benchmark import ddpg_ext_kwargs
from sb3_ddpg_ext.presets import PRESETS, preset

# Small networks so that every preset runs in seconds; everything else is the preset's.
SMALL = {"net_arch": [16, 16]}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_trains_and_round_trips_save_load(name, tmp_path):
    # Short episodes: TD7's checkpoints release the updates they defer at episode ends (all of them by step 300).
    model = DDPGExt(
        "MlpPolicy",
        gym.make("Pendulum-v1", max_episode_steps=50),
        **preset(name, policy_kwargs=SMALL),
        learning_starts=100,
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        seed=0,
    )
    model.learn(300)
    assert model._n_updates == 200
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    observations = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(observations)[0], loaded.predict(observations)[0])
    for key, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, loaded.policy.state_dict()[key]), key


def test_presets_are_what_they_say():
    assert DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["ddpg"]).critic.n_critics == 1
    td3 = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["td3"])
    assert (td3.critic.n_critics, td3.policy_delay, td3.target_policy_noise, td3.target_noise_clip) == (2, 2, 0.2, 0.5)
    d4pg = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["d4pg"])
    assert isinstance(d4pg.critic, CategoricalCritic) and isinstance(d4pg.replay_buffer, PrioritizedReplayBuffer)
    assert d4pg.replay_buffer.n_steps == 5
    crossq = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["crossq"])
    assert crossq.critic_target is None and crossq.actor.optimizer.defaults["betas"] == (0.5, 0.999)
    ext = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["ext"])
    assert ext.critic_target is None and ext.replay_buffer.n_steps == 3
    td7 = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["td7"])
    assert td7.policy.sale is not None and td7.policy.sale.encoder.embedding_dim == 256
    assert td7.replay_buffer.huber_threshold == 1.0 and td7.replay_buffer.alpha == 0.4
    assert (td7.tau, td7.target_update_interval, td7.target_value_clipping) == (1.0, 250, True)
    assert td7._checkpoints is not None and td7._checkpoints.steps_before_checkpointing == 750_000
    assert td7.critic.actor_q == "mean" and isinstance(td7.critic.q_networks[0][1], th.nn.ELU)
    assert isinstance(td7.actor.mu[1], th.nn.ReLU)
    simba = DDPGExt("MlpPolicy", "Pendulum-v1", **PRESETS["simba"])
    assert simba.policy.network == "simba" and simba.policy.normalize_observations
    assert isinstance(simba.critic.optimizer, th.optim.AdamW) and simba.critic.optimizer.defaults["weight_decay"] == 0.01
    assert (simba.critic.n_critics, simba.policy_delay, simba.target_policy_noise) == (2, 2, 0.2)


def test_ext_is_the_benchmarked_variant_it_was_chosen_from():
    # The evidence for `ext` comes from the benchmark's `crossq-n3` runs: they must be the same agent.
    assert PRESETS["ext"] == ddpg_ext_kwargs("crossq-n3")


def test_preset_copies_and_merges_policy_kwargs():
    kwargs = preset("td3", policy_kwargs={"net_arch": [8]}, learning_rate=1e-3)
    assert kwargs["policy_kwargs"] == {"net_arch": [8], "n_critics": 2} and kwargs["learning_rate"] == 1e-3
    assert PRESETS["td3"]["policy_kwargs"]["net_arch"] == [256, 256]
    names = r"\['crossq', 'd4pg', 'ddpg', 'ext', 'simba', 'td3', 'td7'\]"
    with pytest.raises(ValueError, match=rf"unknown preset 'sac'; presets are {names}"):
        preset("sac")

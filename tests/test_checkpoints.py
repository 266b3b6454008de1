"""TD7's policy checkpoints: assessments over training episodes, deferred updates, and acting with the checkpoint."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.ddpg_ext.checkpoints import PolicyCheckpoints

FAST = dict(learning_starts=40, batch_size=32, buffer_size=2_000, seed=9, policy_kwargs=dict(net_arch=[16, 16]))


def _short_pendulum():
    return Monitor(gym.make("Pendulum-v1", max_episode_steps=20))


def _episode(checkpoints: PolicyCheckpoints, episode_return: float, length: int = 4, from_policy: bool = True) -> None:
    for step in range(length):
        checkpoints.record(np.array([episode_return / length]), np.array([step == length - 1]), from_policy)


def test_the_checkpoint_policy_is_the_one_with_the_best_minimum_return():
    checkpoints = PolicyCheckpoints(max_episodes=2, steps_before_checkpointing=0)
    taken = []
    for returns in ([5.0, 3.0], [4.0, 6.0], [2.0], [7.0, 8.0]):  # the third ends early: 2 < the bar 3
        for episode_return in returns:
            assert not checkpoints.assessment_over
            _episode(checkpoints, episode_return)
        assert checkpoints.assessment_over
        taken.append(checkpoints.conclude())
    assert taken == [True, True, False, True]
    assert checkpoints.best_min_return == 7.0 and checkpoints.checkpoints_taken == 3


def test_updates_wait_while_the_policy_is_assessed_and_all_run_at_its_end():
    checkpoints = PolicyCheckpoints(max_episodes=2, steps_before_checkpointing=0)
    _episode(checkpoints, 1.0)
    assert checkpoints.defer(4) == 0
    _episode(checkpoints, 1.0)
    assert checkpoints.defer(4) == 8


def test_episodes_count_only_when_run_entirely_by_the_assessed_policy():
    checkpoints = PolicyCheckpoints(max_episodes=1, steps_before_checkpointing=0)
    # Two envs: env 1's episode starts in the warm-up (random actions), env 0's under the policy.
    checkpoints.record(np.array([0.0, -50.0]), np.array([False, False]), from_policy=False)
    checkpoints.record(np.array([1.0, -50.0]), np.array([False, False]), from_policy=True)
    checkpoints.record(np.array([1.0, -50.0]), np.array([False, True]), from_policy=True)
    assert checkpoints.episodes == 0 and not checkpoints.assessment_over  # env 1's episode did not count
    checkpoints.record(np.array([1.0, 1.0]), np.array([True, False]), from_policy=True)
    assert checkpoints.episodes == 0  # env 0's episode also began with a warm-up step
    for _ in range(2):
        checkpoints.record(np.array([1.0, 1.0]), np.array([False, False]), from_policy=True)
    checkpoints.record(np.array([1.0, 1.0]), np.array([True, True]), from_policy=True)
    assert checkpoints.episodes == 2 and checkpoints.min_return == 3.0
    assert checkpoints.conclude()
    # The episodes running when the policy changes started under the old one: they do not count for the next.
    checkpoints.record(np.array([1.0, 1.0]), np.array([False, False]), from_policy=True)
    checkpoints.conclude()
    checkpoints.record(np.array([9.0, 9.0]), np.array([True, True]), from_policy=True)
    assert checkpoints.episodes == 0


def test_after_steps_before_checkpointing_assessments_grow_and_the_bar_is_lowered():
    checkpoints = PolicyCheckpoints(max_episodes=5, steps_before_checkpointing=100, reset_weight=0.5)
    _episode(checkpoints, 10.0)
    assert checkpoints.episodes_per_assessment == 1 and checkpoints.conclude()
    checkpoints.after_updates(90, 99)
    assert checkpoints.episodes_per_assessment == 1
    checkpoints.after_updates(99, 120)
    assert checkpoints.episodes_per_assessment == 5 and checkpoints.best_min_return == 5.0


def _model(env=None, **kwargs):
    checkpoints = kwargs.pop("policy_checkpoints", dict(max_episodes=2, steps_before_checkpointing=0))
    return DDPGExt("MlpPolicy", env or _short_pendulum(), policy_checkpoints=checkpoints, **{**FAST, **kwargs})


def test_ddpg_ext_defers_the_updates_and_predict_acts_with_the_checkpoint(tmp_path):
    model = _model()
    model.learn(60)  # warm-up 40 steps; one assessed episode (steps 41-60) of the 2 needed: no update yet
    assert model._n_updates == 0 and not model.policy.checkpoint.taken
    model.learn(20, reset_num_timesteps=False)  # the second episode ends the assessment: 40 deferred updates
    assert model._n_updates == 40 and model.policy.checkpoint.taken
    observations = th.randn(5, 3)
    with th.no_grad():
        checkpointed = model.policy.checkpoint.actor(observations)
        current = model.actor(observations)
    assert not th.allclose(checkpointed, current)  # trained after the checkpoint was taken
    action, _ = model.predict(observations.numpy(), deterministic=True)
    np.testing.assert_allclose(action, model.policy.unscale_action(checkpointed.numpy()), rtol=1e-6)
    assert model.logger.name_to_value["train/checkpoints_taken"] == 1
    model.save(tmp_path / "td7")
    loaded = DDPGExt.load(tmp_path / "td7", env=_short_pendulum())
    assert loaded.policy.checkpoint.taken and loaded._checkpoints.__dict__.keys() == model._checkpoints.__dict__.keys()
    assert loaded._checkpoints.best_min_return == model._checkpoints.best_min_return
    for name, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, loaded.policy.state_dict()[name]), name
    np.testing.assert_array_equal(loaded.predict(observations.numpy(), deterministic=True)[0], action)


def test_before_any_checkpoint_predict_acts_with_the_current_actor():
    model = _model()
    observations = th.randn(3, 3)
    with th.no_grad():
        expected = model.policy.unscale_action(model.actor(observations).numpy())
    np.testing.assert_allclose(model.predict(observations.numpy(), deterministic=True)[0], expected, rtol=1e-6)


def test_checkpoints_with_sale_keep_the_encoder_the_actor_read(tmp_path):
    model = _model(policy_kwargs=dict(net_arch=[16, 16], sale=True, sale_embedding_dim=8, sale_net_arch=[16]))
    model.learn(100)
    checkpoint = model.policy.checkpoint
    assert checkpoint.taken and checkpoint.actor.sale is checkpoint.encoder
    assert checkpoint.encoder is not model.policy.sale.fixed


def test_episode_based_training_as_td7_runs_it():
    model = _model(train_freq=(1, "episode"), gradient_steps=-1)
    model.learn(80)  # two assessed episodes (steps 41-80): their 40 steps as updates, once
    assert model._n_updates == 40 and model._checkpoints.checkpoints_taken == 1


def test_several_envs_and_an_eval_callback_work_with_checkpoints(tmp_path):
    env = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=20), n_envs=2, seed=0)
    eval_env = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=20), n_envs=1, seed=1)
    model = _model(env=env)  # SB3 trains by episodes with one env only: here updates are asked for at every step
    callback = EvalCallback(eval_env, eval_freq=30, n_eval_episodes=1, log_path=str(tmp_path))
    model.learn(200, callback=callback)
    assert model._n_updates > 0 and model._checkpoints.checkpoints_taken >= 1
    assert len(np.load(tmp_path / "evaluations.npz")["results"]) > 0


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ("yes", r"`policy_checkpoints` must be a bool or a dict, got 'yes'"),
        (dict(max_episodes=0), r"`max_episodes` must be an integer >= 1, got 0"),
        (dict(reset_weight=2.0), r"`reset_weight` must be in \[0, 1\], got 2.0"),
        (dict(episodes=3), r"`policy_checkpoints` has unknown key\(s\) \['episodes'\]"),
    ],
)
def test_bad_checkpoint_settings_are_refused_naming_the_parameter(setting, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_checkpoints=setting)


def test_the_checkpoint_keeps_the_observation_statistics_it_was_assessed_with_and_the_policy_saves_alone(tmp_path):
    model = _model(policy_kwargs=dict(network="simba", net_arch=dict(pi=[8], qf=[8])))
    model.learn(80)  # the first checkpoint at step 80
    checkpoint = model.policy.checkpoint
    assert checkpoint.taken and checkpoint.actor.features_extractor.normalizer is not model.policy.observation_norm
    snapshot = checkpoint.actor.features_extractor.normalizer.running_mean.clone()
    model.learn(10, reset_num_timesteps=False)  # the statistics move on, the checkpoint's do not
    assert not th.equal(model.policy.observation_norm.running_mean, snapshot)
    assert th.equal(checkpoint.actor.features_extractor.normalizer.running_mean, snapshot)
    model.policy.save(tmp_path / "policy.pth")
    loaded = type(model.policy).load(tmp_path / "policy.pth")
    assert loaded.checkpoint.taken
    observations = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )


def test_checkpoint_is_set_by_the_algorithm_not_by_policy_kwargs():
    with pytest.raises(ValueError, match=r"`policy_kwargs` has unknown key\(s\) \['checkpoint'\]"):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(checkpoint=True))

"""Exploration: adaptive parameter-space noise and scheduled action noise."""

import numpy as np
import pytest
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise, ScheduledActionNoise, perturbed_copy
from sb3_ddpg_ext.common.torch_utils import evaluation_mode

FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000, seed=0)


def test_perturbed_actor_differs_from_the_actor_except_in_normalisation_layers():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], actor_layer_norm=True), **FAST)
    perturbed = perturbed_copy(model.actor, std=0.5)
    for (name, original), (_, noisy) in zip(model.actor.named_parameters(), perturbed.named_parameters(), strict=True):
        if ".1." in name:  # mu.1 is the LayerNorm
            assert th.equal(original, noisy), name
        else:
            assert not th.allclose(original, noisy), name
            if original.numel() > 10:
                assert (noisy - original).std().item() == pytest.approx(0.5, rel=0.3)
    observations = th.randn(64, 3)
    assert not th.allclose(model.actor(observations), perturbed(observations))
    assert not any(parameter.requires_grad for parameter in perturbed.parameters())
    assert getattr(perturbed, "optimizer", None) is None


@pytest.mark.parametrize("target_distance,grows", [(10.0, True), (1e-6, False)])
def test_noise_scale_moves_towards_the_target_distance(target_distance, grows):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), **FAST)
    noise = AdaptiveParamNoise(initial_std=0.1, target_distance=target_distance, adaptation_coefficient=1.05)
    distance = noise.adapt(model.actor, th.randn(128, 3))
    assert distance > 0 and noise.last_distance == distance
    assert noise.std == pytest.approx(0.1 * 1.05 if grows else 0.1 / 1.05)


def test_param_noise_explores_adapts_logs_and_survives_save_load(tmp_path):
    noise = AdaptiveParamNoise(initial_std=0.05, target_distance=0.2, adaptation_interval=10)
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[16]),
        param_noise=noise,
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        **FAST,
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(450, log_interval=1)
    assert noise.perturbed_actor is not None and noise.std != 0.05  # 40 adaptations happened
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"train/param_noise_std", "train/param_noise_distance"} <= set(header)
    # Collected actions come from the perturbed actor, not the actor plus action noise alone.
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.param_noise.std == noise.std and loaded.param_noise.target_distance == 0.2
    assert loaded.param_noise.perturbed_actor is None  # rebuilt from the actor at the next perturbation
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.param_noise.perturbed_actor is not None


def test_param_noise_with_vectorized_envs():
    model = DDPGExt(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=2),
        policy_kwargs=dict(net_arch=[16]),
        param_noise=AdaptiveParamNoise(),
        **FAST,
    )
    model.learn(200)
    assert model._n_updates > 0


@pytest.mark.parametrize(
    "base", [NormalActionNoise(np.zeros(2), np.ones(2)), OrnsteinUhlenbeckActionNoise(np.zeros(2), np.ones(2))]
)
def test_scheduled_noise_reaches_its_end_value(base):
    noise = ScheduledActionNoise(base, LinearSchedule(1.0, 0.1, end_fraction=0.5))
    assert noise.scale == 1.0
    noise.set_progress_remaining(0.75)
    assert noise.scale == pytest.approx(0.55)
    noise.set_progress_remaining(0.0)
    assert noise.scale == pytest.approx(0.1)
    # The scale multiplies the wrapped noise's output.
    noise.reset()
    np.random.seed(0)
    unscaled = base()
    noise.reset()
    np.random.seed(0)
    np.testing.assert_allclose(noise(), 0.1 * unscaled)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_ddpg_ext_drives_the_noise_schedule(n_envs):
    noise = ScheduledActionNoise(NormalActionNoise(np.zeros(1), 0.3 * np.ones(1)), LinearSchedule(1.0, 0.0, end_fraction=1.0))
    model = DDPGExt(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=n_envs), policy_kwargs=dict(net_arch=[16]), action_noise=noise, **FAST
    )
    model.learn(200)
    noises = model.action_noise.noises if n_envs > 1 else [model.action_noise]
    assert all(member.scale == pytest.approx(0.0, abs=1e-9) for member in noises)


def test_bad_noise_settings():
    with pytest.raises(TypeError, match="`param_noise` must be None or an AdaptiveParamNoise instance"):
        DDPGExt("MlpPolicy", "Pendulum-v1", param_noise=0.1)
    with pytest.raises(ValueError, match=r"`adaptation_coefficient` must be in \(1, inf\), got 0.9"):
        AdaptiveParamNoise(adaptation_coefficient=0.9)
    with pytest.raises(ValueError, match=r"`initial_std` must be in \(0, inf\), got 0.0"):
        AdaptiveParamNoise(initial_std=0.0)


def test_batch_renorm_layers_are_never_perturbed():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], batch_norm=True), **FAST)
    perturbed = perturbed_copy(model.actor, std=0.5)
    renorm_names = {
        f"{module_name}.{name}"
        for module_name, module in model.actor.named_modules()
        if isinstance(module, BatchRenorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    assert renorm_names  # scale and bias of each BatchRenorm layer
    for (name, original), (_, noisy) in zip(model.actor.named_parameters(), perturbed.named_parameters(), strict=True):
        assert th.equal(original, noisy) == (name in renorm_names), name


def test_measuring_the_perturbation_distance_changes_no_running_statistic():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], batch_norm=True), **FAST)
    model.actor.set_training_mode(True)  # as inside train()
    before = {name: buffer.clone() for name, buffer in model.actor.named_buffers()}
    noise = AdaptiveParamNoise()
    distance = noise.adapt(model.actor, 3.0 + th.randn(64, 3))
    assert distance > 0
    for name, buffer in model.actor.named_buffers():  # ra_mean, ra_var and the step count of every layer
        assert th.equal(buffer, before[name]), name
    assert model.actor.training  # the actor's mode is given back
    # The distance compares two evaluation-mode networks: the actor with its running statistics and the probe.
    observations, std = th.randn(64, 3), noise.std
    th.manual_seed(0)
    measured = noise.adapt(model.actor, observations)
    th.manual_seed(0)
    probe = perturbed_copy(model.actor, std)  # the same draws
    with th.no_grad(), evaluation_mode(model.actor):
        expected = th.sqrt(th.mean((model.actor(observations) - probe(observations)) ** 2)).item()
    assert measured == pytest.approx(expected, rel=1e-6)


def test_param_noise_with_batch_renorm_critics_and_actor_trains():
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[16], batch_norm=True),
        param_noise=AdaptiveParamNoise(adaptation_interval=5),
        **FAST,
    )
    model.learn(300)
    assert model.param_noise.perturbed_actor is not None and model.param_noise.std != 0.1  # explored and adapted
    model.param_noise.perturb(model.actor)  # the next episode's perturbation
    actor, perturbed = model.actor, model.param_noise.perturbed_actor
    for module, copy in zip(actor.modules(), perturbed.modules(), strict=True):
        if isinstance(module, BatchRenorm):
            assert th.equal(module.scale, copy.scale) and th.equal(module.bias, copy.bias)

"""Critic extensions: clipped double Q, the TD3 tricks and the categorical (D4PG) critic."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from update_helpers import outputs_target_and_loss

from sb3_ddpg_ext import DDPGExt, PrioritizedDictReplayBuffer, PrioritizedReplayBuffer
from sb3_ddpg_ext.common.distributional import categorical_projection
from sb3_ddpg_ext.ddpg_ext.critics import CategoricalCritic
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate, TargetAveraging, TargetSmoothing

FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000)
CATEGORICAL = dict(net_arch=[16], critic="categorical", n_atoms=21, v_min=-200.0, v_max=0.0)


def _brute_force_projection(probabilities, rewards, bootstrap_discounts, atoms):
    n_atoms, spacing = len(atoms), atoms[1] - atoms[0]
    projected = np.zeros_like(probabilities)
    for row in range(probabilities.shape[0]):
        for atom, probability in zip(atoms, probabilities[row], strict=True):
            shifted = min(max(rewards[row] + bootstrap_discounts[row] * atom, atoms[0]), atoms[-1])
            position = (shifted - atoms[0]) / spacing
            lower = int(np.floor(position))
            if lower >= n_atoms - 1:
                projected[row, n_atoms - 1] += probability
            else:
                projected[row, lower] += probability * (lower + 1 - position)
                projected[row, lower + 1] += probability * (position - lower)
    return projected


@pytest.mark.parametrize("batch_size,n_atoms", [(1, 2), (7, 5), (64, 51)])
def test_categorical_projection_equals_brute_force(batch_size, n_atoms):
    rng = np.random.default_rng(batch_size)
    atoms = np.linspace(-10.0, 10.0, n_atoms)
    probabilities = rng.dirichlet(np.ones(n_atoms), size=batch_size)
    # Rewards far outside the support, terminal transitions (discount 0), n-step discounts (gamma^m).
    rewards = rng.choice([-30.0, -3.3, 0.0, 1.7, 25.0], size=batch_size) + rng.normal(size=batch_size)
    bootstrap = rng.choice([0.0, 0.99, 0.99**3, 1.0], size=batch_size)
    projected = categorical_projection(
        th.tensor(probabilities), th.tensor(rewards)[:, None], th.tensor(bootstrap)[:, None], th.tensor(atoms)
    )
    np.testing.assert_allclose(
        projected.numpy(), _brute_force_projection(probabilities, rewards, bootstrap, atoms), atol=1e-12
    )
    np.testing.assert_allclose(projected.sum(dim=1).numpy(), 1.0, atol=1e-12)


def test_projection_special_cases():
    atoms = th.linspace(-2.0, 2.0, 5)
    probabilities = th.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])
    # Zero reward, discount 1: the distribution is its own projection.
    th.testing.assert_close(categorical_projection(probabilities, th.zeros(1, 1), th.ones(1, 1), atoms), probabilities)
    # Terminal: all mass on the reward, split between its two neighbouring atoms.
    th.testing.assert_close(
        categorical_projection(probabilities, th.tensor([[0.25]]), th.zeros(1, 1), atoms),
        th.tensor([[0.0, 0.0, 0.75, 0.25, 0.0]]),
    )
    # A reward above the support: everything on the last atom.
    th.testing.assert_close(
        categorical_projection(probabilities, th.tensor([[50.0]]), th.ones(1, 1), atoms),
        th.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]),
    )


def _trained(policy_kwargs, steps=120, **kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, seed=0, **{**FAST, **kwargs})
    model.learn(steps)
    return model


def test_plain_target_takes_the_minimum_over_critics():
    model = _trained(dict(net_arch=[16], n_critics=3), n_steps=3)
    batch = model.replay_buffer.sample(64)
    with th.no_grad():
        next_actions = model.actor_target(batch.next_observations)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
    # The three target critics disagree, so taking the minimum matters.
    assert (next_q.max(dim=1).values - next_q.min(dim=1).values).min() > 0
    expected = batch.rewards + (1 - batch.dones) * batch.discounts * next_q.min(dim=1, keepdim=True).values
    th.testing.assert_close(outputs_target_and_loss(model, batch)[2], expected)


def test_categorical_target_uses_the_critic_with_the_lowest_mean():
    model = _trained({**CATEGORICAL, "n_critics": 2})
    batch = model.replay_buffer.sample(64)
    with th.no_grad():
        next_actions = model.actor_target(batch.next_observations)
        logits = model.critic_target(batch.next_observations, next_actions)
    probabilities = [th.softmax(output, dim=1) for output in logits]
    means = th.stack([p @ model.critic.atoms for p in probabilities], dim=1)
    lowest = th.where((means[:, 0] <= means[:, 1])[:, None], probabilities[0], probabilities[1])
    expected = categorical_projection(lowest, batch.rewards, (1 - batch.dones) * model.gamma, model.critic.atoms)
    th.testing.assert_close(outputs_target_and_loss(model, batch)[2], expected)


def test_categorical_loss_is_cross_entropy_and_q_is_the_expectation():
    model = _trained(CATEGORICAL, replay_buffer_class=PrioritizedReplayBuffer)
    batch = model.replay_buffer.sample(32)
    _, _, target, (loss, errors, _, current_q, *_) = outputs_target_and_loss(model, batch)
    (logits,) = model.critic(batch.observations, batch.actions)
    cross_entropy = -(target * th.log_softmax(logits, dim=1)).sum(dim=1)
    th.testing.assert_close(loss, (cross_entropy * batch.weights.view(-1)).mean())
    th.testing.assert_close(errors, cross_entropy.detach().view(-1, 1))
    th.testing.assert_close(current_q[:, 0], (th.softmax(logits, dim=1) @ model.critic.atoms).detach())


@pytest.mark.parametrize("lean_update", [True, False])
@pytest.mark.parametrize("policy_delay", [1, 2, 3])
def test_actor_and_targets_are_updated_once_every_policy_delay_critic_updates(policy_delay, lean_update, monkeypatch):
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[16]),
        policy_delay=policy_delay,
        lean_update=lean_update,
        seed=0,
        **FAST,
    )
    counts = {"critic": 0, "actor": 0, "targets": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)

        return counted

    backend = FastUpdate if lean_update else AutogradUpdate
    monkeypatch.setattr(backend, "step_critics", counting("critic", backend.step_critics))
    monkeypatch.setattr(backend, "step_actor", counting("actor", backend.step_actor))
    monkeypatch.setattr(TargetAveraging, "update", counting("targets", TargetAveraging.update))
    model.learn(200)
    assert isinstance(model._update_setup.backend, backend)
    assert counts["critic"] == model._n_updates == 150
    assert counts["actor"] == counts["targets"] == 150 // policy_delay


@pytest.mark.parametrize("noise_clip", [0.3, 0.0])
def test_target_smoothing_noise_is_clipped(noise_clip):
    model = _trained(dict(net_arch=[16]), target_policy_noise=5.0, target_noise_clip=noise_clip)
    batch = model.replay_buffer.sample(256)
    with th.no_grad():
        clean = model.actor_target(batch.next_observations)
    smoothed = TargetSmoothing(model.target_policy_noise, model.target_noise_clip)(clean)
    deviation = (smoothed - clean).abs()
    assert th.all(smoothed.abs() <= 1.0)
    if noise_clip > 0:
        assert th.all(deviation <= noise_clip + 1e-6) and deviation.max() > 0.9 * noise_clip
    else:  # no clipping: a std of 5 moves most actions to a bound
        assert deviation.max() > 0.5


def test_categorical_save_load_round_trip(tmp_path):
    model = _trained({**CATEGORICAL, "n_critics": 2}, n_steps=3)
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    assert isinstance(loaded.critic, CategoricalCritic) and isinstance(loaded.critic_target, CategoricalCritic)
    for key, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, loaded.policy.state_dict()[key]), key
    th.testing.assert_close(loaded.critic_target.atoms, th.linspace(-200.0, 0.0, 21))
    observations = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(observations)[0], loaded.predict(observations)[0])
    loaded.learn(50, reset_num_timesteps=False)


def test_categorical_with_dict_observations_vectorized_envs_per_and_n_steps():
    model = DDPGExt(
        "MultiInputPolicy",
        make_vec_env(lambda: SimpleMultiObsEnv(discrete_actions=False), n_envs=2),
        policy_kwargs=CATEGORICAL,
        replay_buffer_class=PrioritizedDictReplayBuffer,
        n_steps=3,
        **FAST,
    )
    model.learn(200)
    assert model._n_updates == 75


@pytest.mark.parametrize(
    "policy_kwargs,pattern",
    [
        (dict(critic="quantile"), r"`critic` must be one of \['plain', 'categorical'\], got 'quantile'"),
        (dict(critic="categorical", n_atoms=1), r"`n_atoms` must be an integer >= 2, got 1"),
        (dict(critic="categorical", v_min=5.0, v_max=5.0), r"`v_min` < `v_max` must be finite, got v_min=5.0 and v_max=5.0"),
        (dict(critic="categorical", v_min=-np.inf), r"`v_min` < `v_max` must be finite"),
        (dict(n_atoms=51), r"\['n_atoms'\] only apply to `critic='categorical'`"),
        (dict(n_critics=0), r"`n_critics` must be an integer >= 1, got 0"),
    ],
)
def test_invalid_critic_settings(policy_kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


@pytest.mark.parametrize("critic", ["plain", "categorical"])
def test_q_value_gradients_are_the_derivative_of_q_values(critic):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8], critic=critic), **FAST)
    outputs = th.randn(5, 2, model.critic.q_networks[0][-1].out_features, dtype=th.float64, requires_grad=True)
    model.critic.double()
    model.critic.q_values(outputs).sum().backward()
    th.testing.assert_close(model.critic.q_value_gradients(outputs.detach()), outputs.grad)
    th.testing.assert_close(model.critic.q_value_gradients(outputs.detach(), scale=-0.25), -0.25 * outputs.grad)

"""One update: critic types own their maths, modes are declared, and changes after construction take effect."""

import pytest
import torch as th
from stable_baselines3.common.logger import Logger

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.ddpg_ext.critics import CRITIC_TYPES, Critic
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate

FAST = dict(learning_starts=100, batch_size=32, buffer_size=2_000, seed=3)
CRITIC_OPTIONS = {"plain": {}, "categorical": dict(n_atoms=11, v_min=-50.0, v_max=10.0)}


def _trained(steps=150, **kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **{**FAST, **kwargs})
    model.learn(steps)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


# Each critic type with its squared or cross-entropy loss, and with the Huber loss (LAP's) where it has one.
LOSSES = [(critic, False) for critic in sorted(CRITIC_TYPES)] + [
    (critic, True) for critic in sorted(CRITIC_TYPES) if CRITIC_TYPES[critic].supports_huber_loss
]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("critic", "huber"), LOSSES)
def test_each_critic_types_loss_gradient_is_autograds_gradient_of_its_loss(critic, weighted, huber):
    model = _trained(policy_kwargs=dict(net_arch=[16], n_critics=2, critic=critic, **CRITIC_OPTIONS[critic]), steps=110)
    batch = model.replay_buffer.sample(32)
    outputs, next_outputs = AutogradUpdate(model.policy, model._current_update_setup().backend.smoothing).critic_outputs(batch)
    outputs = outputs.detach().requires_grad_(True)
    target = model.critic.td_target(next_outputs, batch.rewards, model._bootstrap_discounts(batch))
    weights = th.linspace(0.1, 1.0, 32).view(-1, 1) if weighted else None
    # The Huber threshold at the median error: errors on both sides of it, so that both branches are checked.
    huber_threshold = float((outputs.detach().squeeze(-1) - target).abs().median()) if huber else None
    loss = model.critic.loss(outputs, target, weights, huber_threshold=huber_threshold)
    (expected,) = th.autograd.grad(loss.loss, outputs)
    th.testing.assert_close(model.critic.loss_gradients(loss), expected)
    assert loss.errors.shape == (32, 2) and not loss.errors.requires_grad
    assert loss.q_values.shape == (32, 2) and model.critic.metric_name in ("td_error_mean", "cross_entropy_mean")


@pytest.mark.parametrize("lean_update", [True, False])
def test_a_replaced_optimizer_takes_effect_at_the_next_train(lean_update):
    model = _trained(policy_kwargs=dict(net_arch=[16]), lean_update=lean_update)
    backend = type(model._update_setup.backend)
    assert backend is (FastUpdate if lean_update else AutogradUpdate)
    old_optimizer = model.actor.optimizer
    old_steps = [state["step"].clone() for state in old_optimizer.state.values()]
    model.actor.optimizer = th.optim.SGD(model.actor.parameters(), lr=0.1)
    calls = []
    sgd_step = model.actor.optimizer.step
    model.actor.optimizer.step = lambda *args, **kwargs: calls.append(1) or sgd_step(*args, **kwargs)
    actor_before = [parameter.clone() for parameter in model.actor.parameters()]
    model.train(gradient_steps=5, batch_size=32)
    assert len(calls) == 5  # the new optimizer made every actor step
    assert all(th.equal(old, state["step"]) for old, state in zip(old_steps, old_optimizer.state.values(), strict=True))
    assert not any(th.equal(old, new) for old, new in zip(actor_before, model.actor.parameters(), strict=True))
    assert type(model._update_setup.backend) is backend


@pytest.mark.parametrize("lean_update", [True, False])
def test_a_replaced_actor_with_its_optimizer_is_trained_and_averaged_into_the_target(lean_update):
    model = _trained(policy_kwargs=dict(net_arch=[16]), lean_update=lean_update)
    actor = model.policy.make_actor()
    actor.optimizer = th.optim.Adam(actor.parameters(), lr=1e-3)
    model.policy.actor = actor
    target_before = [parameter.clone() for parameter in model.actor_target.parameters()]
    initial = [parameter.clone() for parameter in actor.parameters()]
    model.train(gradient_steps=1, batch_size=32)
    assert model.actor is actor
    assert not any(th.equal(old, new) for old, new in zip(initial, actor.parameters(), strict=True))
    # Polyak averaging reads the new actor: target <- target + tau (actor - target), after the actor's step.
    for old, online, new in zip(target_before, actor.parameters(), model.actor_target.parameters(), strict=True):
        th.testing.assert_close(new, old + model.tau * (online - old))


def test_no_target_networks_is_a_declared_mode_that_batch_norm_implies():
    crossq = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], batch_norm=True), **FAST)
    assert not crossq.policy.target_networks and crossq.critic_target is None
    # Declared on its own: no target copies, the critic's joint pass, on either backend.
    plain = _trained(policy_kwargs=dict(net_arch=[16], target_networks=False))
    assert plain.actor_target is None and isinstance(plain._update_setup.backend, FastUpdate)
    specification = _trained(policy_kwargs=dict(net_arch=[16], target_networks=False), lean_update=False)
    assert specification.actor_target is None and isinstance(specification._update_setup.backend, AutogradUpdate)
    assert plain._update_setup.target_averaging.targets == []
    # BatchRenorm with target networks, when asked for.
    with_targets = _trained(policy_kwargs=dict(net_arch=[16], batch_norm=True, target_networks=True))
    assert with_targets.policy.target_networks and with_targets.critic_target is not None
    with pytest.raises(TypeError, match="`target_networks` must be a bool or None, got 'no'"):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(target_networks="no"))


def test_the_declared_mode_survives_save_load(tmp_path):
    model = _trained(policy_kwargs=dict(net_arch=[16], target_networks=False), steps=110)
    model.save(tmp_path / "model")
    loaded = DDPGExt.load(tmp_path / "model")
    assert not loaded.policy.target_networks and loaded.critic_target is None


class SmoothL1Critic(Critic):
    """A critic type that redefines its loss but not the loss's gradient."""

    def loss(self, outputs, target, weights=None, huber_threshold=None):
        base = super().loss(outputs, target, weights, huber_threshold)
        return base._replace(loss=th.nn.functional.huber_loss(self.q_values(outputs), target.expand_as(outputs[..., 0])))


def test_a_critic_type_whose_loss_gradient_is_not_its_own_runs_the_specification(monkeypatch):
    monkeypatch.setitem(CRITIC_TYPES, "smooth_l1", SmoothL1Critic)
    model = _trained(policy_kwargs=dict(net_arch=[16], critic="smooth_l1"), steps=110)
    assert type(model.critic) is SmoothL1Critic and isinstance(model._update_setup.backend, AutogradUpdate)
    plain = _trained(policy_kwargs=dict(net_arch=[16]), steps=110)
    assert isinstance(plain._update_setup.backend, FastUpdate)


def test_moving_the_policy_builds_the_fast_backend_anew():
    model = _trained(policy_kwargs=dict(net_arch=[16]), steps=110)
    backend = model._update_setup.backend
    model.policy.to("cpu")
    model.train(gradient_steps=2, batch_size=32)
    assert isinstance(model._update_setup.backend, FastUpdate) and model._update_setup.backend is not backend

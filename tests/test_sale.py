"""TD7's SALE embeddings in DDPGExt's policies: encoders, their fixed copies, and what actor and critics read."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from torch import nn
from torch.nn import functional as F

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.ddpg_ext.encoders import SaleEncoder, avg_l1_norm
from sb3_ddpg_ext.ddpg_ext.fast_sale import FastSaleUpdate
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate, TargetSmoothing

SALE = dict(net_arch=[16, 16], sale=True, sale_embedding_dim=8, sale_net_arch=[16])
FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000, seed=8)


def _model(steps=80, env="Pendulum-v1", policy_kwargs=None, **kwargs):
    model = DDPGExt("MlpPolicy", env, policy_kwargs={**SALE, **(policy_kwargs or {})}, **{**FAST, **kwargs})
    model.learn(steps)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _equal(first: nn.Module, second: nn.Module) -> bool:
    return all(th.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True))


def test_avg_l1_norm_makes_the_mean_absolute_value_one():
    x = th.randn(5, 7) * 30
    th.testing.assert_close(avg_l1_norm(x).abs().mean(dim=-1), th.ones(5))


def test_the_encoder_loss_is_the_error_of_zsa_against_the_next_states_fixed_embedding():
    encoder = SaleEncoder(3, 2, embedding_dim=4, net_arch=[8])
    features, actions = th.randn(6, 3), th.randn(6, 2)
    next_features = th.randn(6, 3, requires_grad=True)
    loss = encoder.loss(features, actions, next_features)
    zs = encoder.zs(features)
    th.testing.assert_close(loss, F.mse_loss(encoder.zsa(zs, actions), encoder.zs(next_features).detach()))
    loss.backward()
    assert next_features.grad is None  # the next state's embedding is a target: no gradient through it
    th.testing.assert_close(encoder.zs(features).abs().mean(dim=-1), th.ones(6))  # zs is AvgL1-normalised


@pytest.mark.parametrize("lean_update", [True, False])
def test_the_fixed_encoders_change_only_at_target_updates(lean_update):
    model = _model(tau=1.0, target_update_interval=5, lean_update=lean_update)
    assert isinstance(model._update_setup.backend, FastSaleUpdate if lean_update else AutogradUpdate)
    sale = model.policy.sale
    assert model._n_updates % 5 == 0 and _equal(sale.fixed, sale.encoder)
    fixed_before = {name: tensor.clone() for name, tensor in sale.fixed.state_dict().items()}
    for _ in range(4):
        model.train(gradient_steps=1, batch_size=32)
        assert all(th.equal(tensor, fixed_before[name]) for name, tensor in sale.fixed.state_dict().items())
        assert not _equal(sale.encoder, sale.fixed)  # the trained encoder moves at every update
    model.train(gradient_steps=1, batch_size=32)
    assert _equal(sale.fixed, sale.encoder)
    assert all(th.equal(tensor, fixed_before[name]) for name, tensor in sale.fixed_target.state_dict().items())
    assert "train/encoder_loss" in model.logger.name_to_value


def test_networks_read_the_fixed_encoder_and_targets_the_fixed_target_one_also_after_loading(tmp_path):
    model = _model(policy_kwargs=dict(n_critics=2))
    model.save(tmp_path / "sale")
    for candidate in (model, DDPGExt.load(tmp_path / "sale")):
        policy = candidate.policy
        assert policy.actor.sale is policy.sale.fixed and policy.critic.sale is policy.sale.fixed
        assert policy.actor_target.sale is policy.sale.fixed_target and policy.critic_target.sale is policy.sale.fixed_target


def test_the_critic_takes_its_own_normalised_embedding_beside_zsa_and_zs():
    model = _model(policy_kwargs=dict(n_critics=2))
    critic, fixed = model.critic, model.policy.sale.fixed
    observations, actions = th.randn(4, 3), th.rand(4, 1) * 2 - 1
    zs = fixed.zs(observations)
    embeddings = th.cat([fixed.zsa(zs, actions), zs], dim=1)
    for index, output in enumerate(critic(observations, actions)):
        own = avg_l1_norm(critic.input_embeddings[index](th.cat([observations, actions], dim=1)))
        th.testing.assert_close(output, critic.q_networks[index](th.cat([own, embeddings], dim=1)))
    actor = model.actor
    expected = actor.mu(th.cat([avg_l1_norm(actor.state_embedding(observations)), zs], dim=1))
    th.testing.assert_close(actor(observations), expected)


def test_the_encoder_has_its_own_scheduled_optimizer_and_is_in_no_other():
    model = _model(learning_rate=lambda progress: 1e-3 * progress)
    sale = model.policy.sale
    encoder_parameters = {
        id(parameter) for module in (sale.encoder, sale.fixed, sale.fixed_target) for parameter in module.parameters()
    }
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        assert not encoder_parameters & {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {id(p) for group in sale.optimizer.param_groups for p in group["params"]} == {
        id(p) for p in sale.encoder.parameters()
    }
    rates = {optimizer.param_groups[0]["lr"] for optimizer in model.policy.optimizers().values()}
    assert len(rates) == 1 and rates.pop() < 1e-3


def test_actor_q_mean_ascends_the_mean_over_the_critics():
    model = _model(policy_kwargs=dict(n_critics=2, actor_q="mean"))
    observations = th.randn(6, 3)
    loss = AutogradUpdate(model.policy, TargetSmoothing()).actor_loss(observations)
    actions = model.actor(observations)
    expected = -th.cat(model.critic(observations, actions), dim=1).mean()
    th.testing.assert_close(loss, expected)


def test_save_load_restores_every_encoder_and_the_encoders_optimizer(tmp_path):
    model = _model(tau=1.0, target_update_interval=7)  # fixed and fixed-target differ from the trained encoder
    model.save(tmp_path / "sale")
    loaded = DDPGExt.load(tmp_path / "sale", env=model.get_env())
    for name in ("encoder", "fixed", "fixed_target"):
        assert _equal(getattr(loaded.policy.sale, name), getattr(model.policy.sale, name)), name
    saved_state = model.policy.sale.optimizer.state_dict()["state"]
    for key, state in loaded.policy.sale.optimizer.state_dict()["state"].items():
        assert th.equal(state["exp_avg"], saved_state[key]["exp_avg"])
    observations = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )
    loaded.learn(20, reset_num_timesteps=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(policy_kwargs=dict(critic="categorical", n_atoms=11, v_min=-50.0, v_max=0.0, n_critics=2)),
        dict(policy_kwargs=dict(network="simba", net_arch=dict(pi=[16], qf=[16, 16]))),
        dict(policy_kwargs=dict(critic_activation_fn=nn.ELU, n_critics=2)),
        dict(env=make_vec_env("Pendulum-v1", n_envs=2, seed=0)),
    ],
    ids=["categorical", "simba", "elu-critics", "two-envs"],
)
def test_sale_composes_with_the_other_extensions(kwargs):
    model = _model(**kwargs)
    assert model._n_updates > 0 and model.policy.sale is not None
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())


@pytest.mark.parametrize(
    ("policy_kwargs", "pattern"),
    [
        (dict(sale_embedding_dim=8), r"\['sale_embedding_dim'\] only apply with `sale=True`"),
        (dict(sale="yes"), r"`sale` must be a bool, got 'yes'"),
        (dict(sale=True, sale_net_arch=[16, -1]), r"`sale_net_arch` must be a list of positive integers"),
        (dict(sale=True, sale_embedding_dim=0), r"`sale_embedding_dim` must be an integer >= 1, got 0"),
        (dict(actor_q="max"), r"`actor_q` must be one of \['first', 'mean'\], got 'max'"),
        (dict(sale=True, batch_norm=True), r"`sale=True` needs target networks"),
        (dict(sale=True, target_networks=False), r"`sale=True` needs target networks"),
    ],
)
def test_bad_sale_settings_are_refused_naming_the_parameter(policy_kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


def test_sale_needs_features_without_parameters():
    from stable_baselines3.common.envs import FakeImageEnv

    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
    with pytest.raises(ValueError, match=r"`sale=True` needs a features extractor without parameters.*NatureCNN"):
        DDPGExt("CnnPolicy", env, buffer_size=100, policy_kwargs=dict(sale=True))


def test_moving_the_policy_keeps_every_network_on_the_policys_encoders():
    model = _model()
    model.policy.to("cpu")
    policy = model.policy
    assert policy.actor.sale is policy.sale.fixed and policy.critic_target.sale is policy.sale.fixed_target
    assert all(parameter.device.type == "cpu" for parameter in policy.sale.parameters())
    model.learn(10, reset_num_timesteps=False)


def test_sale_with_n_step_returns_is_refused_one_step_model():
    with pytest.raises(ValueError, match=r"`sale=True` learns a one-step dynamics model.*n_steps=3"):
        DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, policy_kwargs=dict(sale=True))


def test_parameter_noise_explores_with_the_live_fixed_encoder():
    from sb3_ddpg_ext import AdaptiveParamNoise

    model = _model(tau=1.0, target_update_interval=5, param_noise=AdaptiveParamNoise(), steps=150)
    perturbed = model.param_noise.perturbed_actor
    assert perturbed is not None and perturbed.sale is model.policy.sale.fixed

"""Bad input fails at construction with an error naming the parameter, the value and what is allowed."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete, SimpleMultiObsEnv
from stable_baselines3.td3.policies import TD3Policy

from sb3_ddpg_ext import DDPGExt


class UnboundedActionEnv(gym.Env):
    observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize(
    "env,message",
    [
        (IdentityEnv(dim=3), "Discrete"),
        (IdentityEnvMultiDiscrete(dim=3), "MultiDiscrete"),
        (IdentityEnvMultiBinary(dim=3), "MultiBinary"),
        (UnboundedActionEnv(), "finite bounds"),
    ],
)
def test_unsupported_action_spaces(env, message):
    with pytest.raises((TypeError, ValueError), match=f"env.action_space.*{message}"):
        DDPGExt("MlpPolicy", env)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(tau=0.0), r"`tau` must be in \(0, 1\], got 0.0"),
        (dict(tau=1.5), r"`tau` must be in \(0, 1\], got 1.5"),
        (dict(gamma=-0.1), r"`gamma` must be in \[0, 1\], got -0.1"),
        (dict(gamma=1.01), r"`gamma` must be in \[0, 1\], got 1.01"),
        (dict(batch_size=0), r"`batch_size` must be an integer >= 1, got 0"),
        (dict(batch_size=32.0), r"`batch_size` must be an integer >= 1, got 32.0"),
        (dict(buffer_size=0), r"`buffer_size` must be an integer >= 1, got 0"),
        (dict(learning_starts=-1), r"`learning_starts` must be an integer >= 0, got -1"),
        (dict(n_steps=0), r"`n_steps` must be an integer >= 1, got 0"),
        (dict(gradient_steps=-2), r"`gradient_steps` must be an integer >= -1, got -2"),
        (dict(learning_rate=-1e-3), r"`learning_rate` must be in \(0, inf\), got -0.001"),
        (dict(learning_rate="fast"), r"`learning_rate` must be a number"),
        (dict(policy_delay=0), r"`policy_delay` must be an integer >= 1, got 0"),
        (dict(target_policy_noise=-0.2), r"`target_policy_noise` must be in \[0, inf\), got -0.2"),
        (dict(target_noise_clip=-0.5), r"`target_noise_clip` must be in \[0, inf\), got -0.5"),
        (dict(action_noise=0.1), r"`action_noise` must be None or an ActionNoise instance, got 0.1"),
        (
            dict(policy_kwargs=dict(net_arch=[8], n_critic=2)),
            r"`policy_kwargs` has unknown key\(s\) \['n_critic'\]; allowed keys are \[.*'n_critics'",
        ),
        (dict(replay_buffer_kwargs=dict(alpha=0.6)), r"`replay_buffer_kwargs` has unknown key\(s\) \['alpha'\]"),
        (
            dict(n_steps=3, replay_buffer_kwargs=dict(n_steps=5)),
            r"`replay_buffer_kwargs\['n_steps'\]=5` contradicts `n_steps=3`",
        ),
    ],
)
def test_invalid_arguments(kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", **kwargs)


def test_unknown_policy_alias_lists_the_allowed_ones():
    with pytest.raises(
        ValueError, match=r"`policy` must be one of \['CnnPolicy', 'MlpPolicy', 'MultiInputPolicy'\].*got 'MLPPolicy'"
    ):
        DDPGExt("MLPPolicy", "Pendulum-v1")


@pytest.mark.parametrize("policy", [dict, TD3Policy])
def test_policy_that_is_not_a_ddpg_ext_policy_class(policy):
    # SB3's TD3Policy is DDPG's MlpPolicy class: refused at construction, not at the first update.
    with pytest.raises(TypeError, match=r"`policy` must be a policy alias string .* or a DDPGExtPolicy subclass, got"):
        DDPGExt(policy, "Pendulum-v1")


def test_n_steps_with_a_buffer_that_cannot_do_n_step_returns():
    class PlainBuffer(ReplayBuffer):
        pass

    with pytest.raises(ValueError, match=r"`n_steps=3` needs a replay buffer that computes n-step returns.*PlainBuffer"):
        DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, replay_buffer_class=PlainBuffer)


def test_n_steps_with_sb3_dict_buffer_is_refused():
    with pytest.raises(ValueError, match=r"`n_steps=3` needs a replay buffer .* `replay_buffer_class=DictReplayBuffer`"):
        DDPGExt("MultiInputPolicy", SimpleMultiObsEnv(discrete_actions=False), n_steps=3, replay_buffer_class=DictReplayBuffer)


def test_bad_train_freq_unit():
    with pytest.raises(ValueError, match="train_freq"):
        DDPGExt("MlpPolicy", "Pendulum-v1", train_freq=(1, "minute"))


def test_users_dicts_are_not_modified():
    policy_kwargs, buffer_kwargs = dict(net_arch=[8]), dict()
    DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, policy_kwargs=policy_kwargs, replay_buffer_kwargs=buffer_kwargs)
    assert policy_kwargs == dict(net_arch=[8]) and buffer_kwargs == {}


def test_buffer_gamma_follows_the_algorithm_and_contradictions_are_refused():
    from sb3_ddpg_ext import PrioritizedReplayBuffer

    # n_steps given the SB3 way, through the buffer: its returns are still discounted by the algorithm's gamma.
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        gamma=0.9,
        replay_buffer_class=PrioritizedReplayBuffer,
        replay_buffer_kwargs=dict(n_steps=3),
    )
    assert (model.replay_buffer.n_steps, model.replay_buffer.gamma) == (3, 0.9)
    with pytest.raises(ValueError, match=r"`replay_buffer_kwargs\['gamma'\]=0.99` contradicts `gamma=0.9`"):
        DDPGExt("MlpPolicy", "Pendulum-v1", gamma=0.9, replay_buffer_kwargs=dict(gamma=0.99))


def test_her_with_n_steps_is_refused_clearly():
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.envs import BitFlippingEnv

    with pytest.raises(ValueError, match=r"`n_steps=3` needs a replay buffer that computes n-step returns.*HerReplayBuffer"):
        DDPGExt(
            "MultiInputPolicy",
            BitFlippingEnv(n_bits=4, continuous=True, max_steps=4),
            n_steps=3,
            replay_buffer_class=HerReplayBuffer,
        )


@pytest.mark.parametrize("env", [IdentityEnv(dim=3), IdentityEnvMultiBinary(dim=3), UnboundedActionEnv()])
def test_unsupported_action_spaces_are_assertion_errors_as_in_sb3(env):
    # SB3's own tests expect `pytest.raises(AssertionError)` from DDPG("MlpPolicy", "CartPole-v1").
    with pytest.raises(AssertionError, match=r"env\.action_space"):
        DDPGExt("MlpPolicy", env)


class ForwardingBuffer(ReplayBuffer):
    """A user's buffer that forwards its keyword arguments to SB3's (which takes no n_steps/gamma)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)


def test_a_buffer_taking_kwargs_gets_no_n_step_arguments_with_one_step_returns():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", replay_buffer_class=ForwardingBuffer, policy_kwargs=dict(net_arch=[8]))
    assert type(model.replay_buffer) is ForwardingBuffer and model.replay_buffer_kwargs == {}


def test_a_buffer_taking_kwargs_that_cannot_do_n_step_returns_is_named_in_the_error():
    with pytest.raises(TypeError, match=r"hand \['n_steps', 'gamma'\] to `replay_buffer_class=ForwardingBuffer`"):
        DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, replay_buffer_class=ForwardingBuffer)


def test_sb3_n_step_buffer_given_by_class_gets_the_algorithms_gamma():
    from stable_baselines3.common.buffers import NStepReplayBuffer

    model = DDPGExt("MlpPolicy", "Pendulum-v1", gamma=0.95, replay_buffer_class=NStepReplayBuffer)
    assert (model.replay_buffer.n_steps, model.replay_buffer.gamma) == (3, 0.95)  # its own default n_steps

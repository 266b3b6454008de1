"""The checks of DDPGExt's constructor arguments: each raises a clear error naming the argument, before anything is built."""

from typing import TYPE_CHECKING, Any

from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy

from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.common.validation import (
    InvalidTypeError,
    InvalidValueError,
    accepted_keyword_arguments,
    check_int,
    check_known_keys,
    check_range,
)
from sb3_ddpg_ext.ddpg_ext.critics import check_loss_settings
from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy

if TYPE_CHECKING:
    from sb3_ddpg_ext.ddpg_ext.ddpg_ext import DDPGExt

# Arguments the algorithm passes to the policy itself; they are not for ``policy_kwargs``.
_POLICY_ARGUMENTS_SET_BY_ALGORITHM = ("observation_space", "action_space", "lr_schedule", "checkpoint")


def check_policy(policy: Any, aliases: dict[str, type[BasePolicy]]) -> None:
    """``policy``: one of ``aliases`` or a :class:`DDPGExtPolicy` subclass."""
    if isinstance(policy, str):
        if policy not in aliases:
            raise InvalidValueError(f"`policy` must be one of {sorted(aliases)} or a policy class, got {policy!r}")
    elif not (isinstance(policy, type) and issubclass(policy, DDPGExtPolicy)):
        # SB3's TD3 policies (DDPG's MlpPolicy class) lack the critic readout the update uses; the alias works.
        raise InvalidTypeError(
            f"`policy` must be a policy alias string ({', '.join(sorted(aliases))}) or a DDPGExtPolicy "
            f"subclass, got {policy!r}"
        )


def check_arguments(model: "DDPGExt") -> None:
    """Every constructor argument of ``model`` (read from its attributes, as SB3 stores them)."""
    if not callable(model.learning_rate):
        check_range("learning_rate", model.learning_rate, low=0.0, low_inclusive=False)
    check_int("buffer_size", model.buffer_size, 1)
    check_int("learning_starts", model.learning_starts, 0)
    check_int("batch_size", model.batch_size, 1)
    check_range("tau", model.tau, low=0.0, high=1.0, low_inclusive=False)
    check_range("gamma", model.gamma, low=0.0, high=1.0)
    check_int("gradient_steps", model.gradient_steps, -1)
    check_int("n_steps", model.n_steps, 1)
    check_int("policy_delay", model.policy_delay, 1)
    if model.target_update_interval is not None:
        check_int("target_update_interval", model.target_update_interval, 1)
    for name in ("target_value_clipping", "lean_update"):
        if not isinstance(getattr(model, name), bool):
            raise InvalidTypeError(f"`{name}` must be a bool, got {getattr(model, name)!r}")
    check_range("target_policy_noise", model.target_policy_noise, low=0.0)
    check_range("target_noise_clip", model.target_noise_clip, low=0.0)
    if model.action_noise is not None and not isinstance(model.action_noise, ActionNoise):
        raise InvalidTypeError(f"`action_noise` must be None or an ActionNoise instance, got {model.action_noise!r}")
    if model.param_noise is not None and not isinstance(model.param_noise, AdaptiveParamNoise):
        raise InvalidTypeError(f"`param_noise` must be None or an AdaptiveParamNoise instance, got {model.param_noise!r}")
    check_known_keys(
        "policy_kwargs",
        model.policy_kwargs,
        accepted_keyword_arguments(model.policy_class, skip=_POLICY_ARGUMENTS_SET_BY_ALGORITHM),
    )


def check_parts_fit(model: "DDPGExt") -> None:
    """After the buffer and the policy are built: the critic type supports the loss the buffer and the value clipping
    ask for, and SALE's one-step dynamics model gets one-step transitions."""
    check_loss_settings(
        type(model.policy.critic), getattr(model.replay_buffer, "huber_threshold", None), model.target_value_clipping
    )
    n_steps = getattr(model.replay_buffer, "n_steps", 1)
    if model.policy.sale is not None and n_steps > 1:
        raise InvalidValueError(
            f"`sale=True` learns a one-step dynamics model from the batches' next observations, which are "
            f"{n_steps} steps ahead with `n_steps={n_steps}`: use n_steps=1 with SALE"
        )

"""The checks of DDPGExtPolicy's options: each raises a clear error that names the option, at construction."""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

from sb3_ddpg_ext.common.networks import NETWORKS, SIMBA_NET_ARCH
from sb3_ddpg_ext.common.validation import InvalidTypeError, InvalidValueError, check_int, check_range
from sb3_ddpg_ext.ddpg_ext.critics import CRITIC_TYPES

# TD7's SALE settings (Fujimoto et al. 2023): 256-dimensional embeddings, 256-256 ELU encoders.
SALE_DEFAULTS: dict[str, Any] = {"embedding_dim": 256, "net_arch": [256, 256], "activation_fn": nn.ELU}
ACTOR_Q = ("first", "mean")


def with_fused_adam(optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Adam's fused kernel: the same update as its per-tensor loop, in one kernel over all tensors."""
    kwargs = dict(optimizer_kwargs or {})
    if optimizer_class in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & kwargs.keys():
        kwargs["fused"] = True
    return kwargs


def normalization_options(**options: Any) -> dict[str, Any]:
    """Check the normalisation options (booleans and BatchRenorm hyperparameters)."""
    for name in ("layer_norm", "actor_layer_norm", "batch_norm"):
        if not isinstance(options[name], bool):
            raise InvalidTypeError(f"`{name}` must be a bool, got {options[name]!r}")
    check_range("batch_norm_momentum", options["batch_norm_momentum"], low=0.0, high=1.0, low_inclusive=False)
    check_range("batch_norm_eps", options["batch_norm_eps"], low=0.0, low_inclusive=False)
    check_int("renorm_warmup_steps", options["renorm_warmup_steps"], 0)
    return options


def check_network(
    network: str,
    normalize_observations: Any,
    net_arch: list[int] | dict[str, list[int]] | None,
    activation_fn: type[nn.Module],
    normalization: dict[str, Any],
    critic_activation_fn: type[nn.Module] | None = None,
) -> list[int] | dict[str, list[int]] | None:
    """Check the network kind and its options; the ``net_arch`` to build with (SimBa's default for SimBa)."""
    if network not in NETWORKS:
        raise InvalidValueError(f"`network` must be one of {list(NETWORKS)}, got {network!r}")
    if not isinstance(normalize_observations, bool):
        raise InvalidTypeError(f"`normalize_observations` must be a bool or None, got {normalize_observations!r}")
    if network != "simba":
        return net_arch
    given = [f"{name}=True" for name in ("layer_norm", "actor_layer_norm", "batch_norm") if normalization[name]]
    given += [f"activation_fn={activation_fn}"] if activation_fn is not nn.ReLU else []
    given += [f"critic_activation_fn={critic_activation_fn}"] if critic_activation_fn is not None else []
    if given:
        raise InvalidValueError(f"`network='simba'` has its own LayerNorms and ReLUs: remove {', '.join(given)}")
    return dict(SIMBA_NET_ARCH) if net_arch is None else net_arch


def critic_options(critic: str, **given: Any) -> dict[str, Any]:
    """Check the critic type and its options (None: not given); fill in the type's defaults."""
    if critic not in CRITIC_TYPES:
        raise InvalidValueError(f"`critic` must be one of {list(CRITIC_TYPES)}, got {critic!r}")
    critic_class = CRITIC_TYPES[critic]
    given = {key: value for key, value in given.items() if value is not None}
    foreign = sorted(set(given) - set(critic_class.option_defaults))
    if foreign:
        owners = sorted(name for name, cls in CRITIC_TYPES.items() if set(foreign) & set(cls.option_defaults))
        allowed = " or ".join(f"`critic={owner!r}`" for owner in owners) or "no critic type"
        raise InvalidValueError(f"{foreign} only apply to {allowed}, got critic={critic!r}")
    return {"critic": critic, **critic_class.check_options(given)}


def check_observation_normalization(normalize_observations: bool, observation_space: spaces.Space) -> None:
    if normalize_observations and (not isinstance(observation_space, spaces.Box) or is_image_space(observation_space)):
        raise InvalidValueError(
            f"`normalize_observations=True` needs a non-image Box observation space, got {observation_space} "
            "(normalise other observations with SB3's VecNormalize)"
        )


def sale_options(sale: Any, target_networks: bool, **given: Any) -> dict[str, Any] | None:
    """
    Check TD7's SALE switch and its options (None: not given; they need ``sale=True``); the encoder's keyword
    arguments with TD7's defaults, or None without SALE.
    """
    if not isinstance(sale, bool):
        raise InvalidTypeError(f"`sale` must be a bool, got {sale!r}")
    if sale and not target_networks:
        raise InvalidValueError(
            "`sale=True` needs target networks (their fixed-target encoder): not with `target_networks=False` or "
            "`batch_norm=True`"
        )
    given = {key: value for key, value in given.items() if value is not None}
    if not sale:
        if given:
            raise InvalidValueError(f"{sorted('sale_' + key for key in given)} only apply with `sale=True`")
        return None
    options = {**SALE_DEFAULTS, **given}
    check_int("sale_embedding_dim", options["embedding_dim"], 1)
    if not (isinstance(options["net_arch"], list) and all(isinstance(size, int) and size > 0 for size in options["net_arch"])):
        raise InvalidValueError(f"`sale_net_arch` must be a list of positive integers, got {options['net_arch']!r}")
    return options


def check_actor_q(actor_q: Any) -> str:
    if actor_q not in ACTOR_Q:
        raise InvalidValueError(f"`actor_q` must be one of {list(ACTOR_Q)}, got {actor_q!r}")
    return actor_q

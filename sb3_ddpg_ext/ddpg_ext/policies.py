"""Actor-critic policies of DDPGExt: a deterministic actor, one or more Q critics and their targets."""

import copy
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.preprocessing import get_action_dim, get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import get_device
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_ddpg_ext.common.batch_renorm import BatchRenorm1d
from sb3_ddpg_ext.common.networks import NormalizedFlattenExtractor, RunningObservationNorm
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.common.validation import InvalidTypeError, InvalidValueError, check_int
from sb3_ddpg_ext.ddpg_ext.actor import Actor
from sb3_ddpg_ext.ddpg_ext.checkpoints import CheckpointActor
from sb3_ddpg_ext.ddpg_ext.critics import CRITIC_TYPES, Critic
from sb3_ddpg_ext.ddpg_ext.encoders import SaleEncoders
from sb3_ddpg_ext.ddpg_ext.policy_options import (
    check_actor_q,
    check_network,
    check_observation_normalization,
    critic_options,
    normalization_options,
    sale_options,
    with_fused_adam,
)


class DDPGExtPolicy(TD3Policy):
    """
    Policy of DDPGExt: a deterministic actor ``mu(s)`` squashed by tanh, ``n_critics`` Q-networks
    ``Q_k(s, a)``, and a target copy of each (SB3's TD3 actor and ``ContinuousCritic``).

    Unlike SB3's ``TD3Policy`` the default is one critic: DDPG (Lillicrap et al. 2016).

    :param observation_space: Observation space
    :param action_space: Action space (a bounded ``Box``)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes: a list shared by actor and critic, or a dict with keys ``pi``
        (actor) and ``qf`` (critic). Default: ``[400, 300]`` (``[256, 256]`` after a CNN), as in the DDPG paper.
    :param activation_fn: Activation function of the hidden layers
    :param features_extractor_class: Features extractor (default: the class's ``default_features_extractor_class``)
    :param features_extractor_kwargs: Keyword arguments for the features extractor
    :param normalize_images: Whether to divide image observations by 255
    :param optimizer_class: Optimizer of actor and critic (``th.optim.Adam`` by default)
    :param optimizer_kwargs: Keyword arguments for the optimizer, the learning rate excluded. For Adam and
        AdamW, ``fused=True`` is the default (the same update in one kernel; pass ``fused=False`` to opt out)
    :param n_critics: Number of Q-networks; the TD target uses the minimum over them (clipped double Q)
    :param share_features_extractor: Whether actor and critic share one features extractor
        (then it is trained by the actor loss only)
    :param critic: ``"plain"`` (scalar Q-values) or ``"categorical"`` (D4PG's distributional critic)
    :param n_atoms: categorical critic only: number of atoms of the support (default 51)
    :param v_min: categorical critic only: lower bound of the support (default -10); smaller returns are clipped
    :param v_max: categorical critic only: upper bound of the support (default 10); larger returns are clipped
    :param layer_norm: LayerNorm after each hidden linear layer of the critic(s)
    :param actor_layer_norm: LayerNorm after each hidden linear layer of the actor
    :param batch_norm: CrossQ (Bhatt et al. 2024): BatchRenorm before each linear layer of actor and critic;
        it implies ``target_networks=False``
    :param target_networks: whether the policy has target copies of actor and critics (averaged by Polyak). Without
        them (CrossQ) the algorithm evaluates ``(s, a)`` and ``(s', a')`` in one joint forward pass of the critic, so
        that normalisation statistics cover both. Default: True, False with ``batch_norm=True``
    :param batch_norm_momentum: BatchRenorm momentum of the running statistics (sb3-contrib's CrossQ default)
    :param batch_norm_eps: BatchRenorm epsilon
    :param renorm_warmup_steps: BatchRenorm updates that use batch statistics before the running ones
    :param network: ``"mlp"`` (SB3's) or ``"simba"``: SimBa's residual networks (Lee et al. 2025,
        https://arxiv.org/abs/2410.09754) for actor and critics, where ``net_arch`` lists the residual blocks (one
        width repeated); default then ``dict(pi=[128], qf=[512, 512])``, SimBa's DDPG setting. They bring their own
        LayerNorms and ReLUs: no ``layer_norm``/``batch_norm``/``activation_fn`` with them
    :param normalize_observations: SimBa's running observation normalisation, shared by actor, critics and targets,
        updated from the collected observations only (:meth:`observe`), saved with the policy. Default: True with
        ``network="simba"``, else False. Needs a non-image ``Box`` observation space
    :param sale: TD7's SALE (Fujimoto et al. 2023, https://arxiv.org/abs/2306.02451): learned embeddings ``zs`` of
        the state and ``zsa`` of state and action (:mod:`~sb3_ddpg_ext.ddpg_ext.encoders`), which actor and critics
        take beside their own AvgL1-normalised embedding of their inputs. The encoder is trained at every update on
        predicting the next state's ``zs``; actor and critics read a fixed copy, the targets a fixed-target copy,
        both renewed at each target update. Needs features extractors without parameters (flattened observations)
    :param sale_embedding_dim: SALE only: the size of ``zs`` and ``zsa`` (default 256)
    :param sale_net_arch: SALE only: the hidden layers of both encoders (default ``[256, 256]``)
    :param sale_activation_fn: SALE only: the encoders' activation (default ``nn.ELU``)
    :param critic_activation_fn: the critics' activation, when it is not ``activation_fn`` (TD7: ELU critics, ReLU
        actor)
    :param actor_q: what the actor ascends: ``"first"``, the first critic's Q (TD3, SB3), or ``"mean"``, the mean over
        the critics (TD7)
    :param checkpoint: keep a checkpoint policy (TD7, :class:`~sb3_ddpg_ext.ddpg_ext.checkpoints.CheckpointActor`),
        which ``predict`` acts with once one is taken; set by the algorithm from its ``policy_checkpoints``
    """

    default_features_extractor_class: ClassVar[type[BaseFeaturesExtractor]] = FlattenExtractor
    # Our critics replace SB3's ContinuousCritic (same interface, more output types).
    actor: Actor
    actor_target: Actor
    critic: Critic  # type: ignore[assignment]
    critic_target: Critic  # type: ignore[assignment]
    sale: SaleEncoders | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        share_features_extractor: bool = False,
        critic: str = "plain",
        n_atoms: int | None = None,
        v_min: float | None = None,
        v_max: float | None = None,
        layer_norm: bool = False,
        actor_layer_norm: bool = False,
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.01,
        batch_norm_eps: float = 0.001,
        renorm_warmup_steps: int = 100_000,
        target_networks: bool | None = None,
        network: str = "mlp",
        normalize_observations: bool | None = None,
        sale: bool = False,
        sale_embedding_dim: int | None = None,
        sale_net_arch: list[int] | None = None,
        sale_activation_fn: type[nn.Module] | None = None,
        critic_activation_fn: type[nn.Module] | None = None,
        actor_q: str = "first",
        checkpoint: bool = False,
    ):
        check_int("n_critics", n_critics, 1)
        if target_networks is not None and not isinstance(target_networks, bool):
            raise InvalidTypeError(f"`target_networks` must be a bool or None, got {target_networks!r}")
        # The mode is declared here, once; the algorithm and the update read this attribute, never the objects.
        self.target_networks = (not batch_norm) if target_networks is None else target_networks
        self.normalization = normalization_options(
            layer_norm=layer_norm,
            actor_layer_norm=actor_layer_norm,
            batch_norm=batch_norm,
            batch_norm_momentum=batch_norm_momentum,
            batch_norm_eps=batch_norm_eps,
            renorm_warmup_steps=renorm_warmup_steps,
        )
        self.network = network
        self.normalize_observations = (network == "simba") if normalize_observations is None else normalize_observations
        net_arch = check_network(
            network, self.normalize_observations, net_arch, activation_fn, self.normalization, critic_activation_fn
        )
        check_observation_normalization(self.normalize_observations, observation_space)
        self.sale_options = sale_options(
            sale,
            self.target_networks,
            embedding_dim=sale_embedding_dim,
            net_arch=sale_net_arch,
            activation_fn=sale_activation_fn,
        )
        self.critic_activation_fn = critic_activation_fn
        self.actor_q = check_actor_q(actor_q)
        self.has_checkpoint = checkpoint
        # Set before nn.Module.__init__ (plain attributes are allowed there): TD3Policy builds the critic
        # inside its constructor, through make_critic.
        self.critic_options = critic_options(critic, n_atoms=n_atoms, v_min=v_min, v_max=v_max)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class or self.default_features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=with_fused_adam(optimizer_class, optimizer_kwargs),
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )

    def set_training_mode(self, mode: bool) -> None:
        """
        Put the networks in training or evaluation mode (affects BatchNorm and dropout).

        SB3 calls this twice per environment step; the module list is resolved once instead of walking the
        module tree each time. As in SB3's ``TD3Policy``, the target networks stay in evaluation mode.
        """
        if getattr(self, "_module_list", None) is None:
            self._module_list = [self, *self.actor.modules(), *self.critic.modules()]
        for module in self._module_list:
            # A plain attribute: writing the instance dict skips nn.Module.__setattr__'s type checks.
            module.__dict__["training"] = mode

    @property
    def device(self) -> th.device:
        """
        The device of the parameters (CPU when there are none yet).

        SB3 walks the module tree for it at each call, once per environment step in ``predict``; the first
        parameter is resolved once instead (parameters are updated in place; moving the policy resets it).
        """
        first_parameter = self.__dict__.get("_first_parameter")
        if first_parameter is None:
            first_parameter = next(self.parameters(), None)
            if first_parameter is None:
                return get_device("cpu")
            self.__dict__["_first_parameter"] = first_parameter  # a plain attribute, not registered
        return first_parameter.device

    def _apply(self, fn: Any, recurse: bool = True) -> "DDPGExtPolicy":
        # .to(), .cuda(), .float(), ...: the parameters may be replaced.
        self.__dict__.pop("_first_parameter", None)
        # Counted, so that what holds views of the old tensors (the fast update backend) is built anew.
        self.__dict__["_moves"] = self.__dict__.get("_moves", 0) + 1
        return super()._apply(fn, recurse)

    def exploration_actions(
        self,
        observations: np.ndarray | dict[str, np.ndarray],
        action_noise: ActionNoise | None = None,
        param_noise: AdaptiveParamNoise | None = None,
        episode: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        The actions SB3's ``_sample_action`` collects with, after its random warm-up: the actor's (with parameter
        noise, its perturbed copy's, perturbed anew when ``episode`` moves on) for the last observations, rescaled
        as SB3's ``predict`` and ``_sample_action`` rescale them (so the buffer holds SB3's floats), with the action
        noise added and clipped. ``predict``'s per-call checks and mode switches are left out: collection runs in
        evaluation mode already.

        :return: the env actions and the buffer actions (scaled to [-1, 1]), ``(n_envs, action_dim)`` each
        """
        assert isinstance(self.action_space, spaces.Box)
        tensors, _ = self.obs_to_tensor(observations)
        if param_noise is None:
            with th.inference_mode():  # the current actor, also when predict() acts with TD7's checkpoint
                outputs = self.actor(tensors).cpu().numpy()
        else:
            outputs = param_noise.actions(self.actor, tensors, episode=episode)
        outputs = outputs.reshape((-1, *self.action_space.shape))
        # predict unscales the squashed outputs to the env's bounds, _sample_action scales them back: the same floats.
        scaled_action = self.scale_action(self.unscale_action(outputs))
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.unscale_action(scaled_action), scaled_action

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        """SB3's, or with ``normalize_observations`` a flattening extractor around the policy's shared normaliser."""
        if not self.normalize_observations:
            return super().make_features_extractor()
        if "observation_norm" not in self._modules:
            self.observation_norm = RunningObservationNorm(get_flattened_obs_dim(self.observation_space))
        return NormalizedFlattenExtractor(self.observation_space, self.observation_norm)

    def observe(self, observations: np.ndarray | dict[str, np.ndarray]) -> None:
        """Update the running observation statistics with collected observations (nothing without them)."""
        if self.normalize_observations:
            tensors, _ = self.obs_to_tensor(observations)
            assert isinstance(tensors, th.Tensor)
            self.observation_norm.update(tensors)

    def train_encoder(self, batch: ReplayBufferSamples) -> th.Tensor:
        """One optimizer step of SALE's encoder on a batch (see :class:`SaleEncoders`); returns its loss."""
        assert self.sale is not None
        extract = partial(self.critic.extract_features, features_extractor=self.critic.features_extractor)
        return self.sale.train_step(extract(batch.observations), batch.actions, extract(batch.next_observations))

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        # predict(), evaluate_policy and EvalCallback act with TD7's checkpoint once taken (as TD7 evaluates).
        checkpoint = self._modules.get("checkpoint")
        if checkpoint is not None and checkpoint.taken:
            return checkpoint(observation)
        return self.actor(observation)

    def optimizers(self) -> dict[str, th.optim.Optimizer]:
        """The optimizers, by their names from the algorithm (SB3's ``actor.optimizer``...; SALE's encoder's too)."""
        sale = {} if self.sale is None else {"policy.sale.optimizer": self.sale.optimizer}
        return {"actor.optimizer": self.actor.optimizer, "critic.optimizer": self.critic.optimizer, **sale}

    def refresh_encoders(self) -> None:
        """At a target update: SALE's fixed-target encoder <- fixed <- trained (nothing without SALE)."""
        if self.sale is not None:
            self.sale.refresh()

    def _build(self, lr_schedule: Schedule) -> None:
        self.sale = None if self.sale_options is None else self._make_sale(lr_schedule)
        self._build_networks(lr_schedule)
        if self.has_checkpoint:
            self.checkpoint = self._make_checkpoint()

    def _make_checkpoint(self) -> CheckpointActor:
        """A checkpoint actor with its own copies of what the actor reads: SALE's fixed encoder, the observation
        statistics (the checkpoint acts as the policy did when it was assessed, whatever the statistics become)."""
        actor = self.make_actor()
        if self.normalize_observations:
            actor.features_extractor.normalizer = copy.deepcopy(self.observation_norm)
        return CheckpointActor(actor, None if self.sale is None else copy.deepcopy(self.sale.fixed))

    def _build_networks(self, lr_schedule: Schedule) -> None:
        if self.target_networks:
            super()._build(lr_schedule)
            if self.sale is not None:  # built with the fixed encoder, the targets read the fixed-target one
                self.actor_target.use_encoder(self.sale.fixed_target)
                self.critic_target.use_encoder(self.sale.fixed_target)
            return
        self.actor = self.make_actor(features_extractor=None)
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        shared = self.actor.features_extractor if self.share_features_extractor else None
        self.critic = self.make_critic(features_extractor=shared)
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.actor_target = self.critic_target = None  # type: ignore[assignment]

    def _make_sale(self, lr_schedule: Schedule) -> SaleEncoders:
        extractor = self.make_features_extractor()
        if any(True for _ in extractor.parameters()):
            raise InvalidValueError(
                f"`sale=True` needs a features extractor without parameters (flattened observations), got "
                f"{type(extractor).__name__}: the encoders read the features directly"
            )
        encoders = SaleEncoders(
            extractor.features_dim,
            get_action_dim(self.action_space),
            self.optimizer_class,
            lr_schedule(1),
            self.optimizer_kwargs,
            **(self.sale_options or {}),
        )
        return encoders.to(self.device)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        fixed = None if self.sale is None else self.sale.fixed
        return Actor(**actor_kwargs, **self._layers("actor"), sale=fixed).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> Critic:  # type: ignore[override]
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        if self.critic_activation_fn is not None:
            critic_kwargs["activation_fn"] = self.critic_activation_fn
        options = dict(self.critic_options)
        critic_class = CRITIC_TYPES[options.pop("critic")]
        fixed = None if self.sale is None else self.sale.fixed
        critic = critic_class(**critic_kwargs, **options, **self._layers("critic"), sale=fixed, actor_q=self.actor_q)
        return critic.to(self.device)

    def _layers(self, network: str) -> dict[str, Any]:
        """The normalisation layers of the actor or the critic, as ``create_mlp`` takes them."""
        options = self.normalization
        pre = [
            partial(
                BatchRenorm1d,
                momentum=options["batch_norm_momentum"],
                eps=options["batch_norm_eps"],
                warmup_steps=options["renorm_warmup_steps"],
            )
        ]
        layer_norm = options["actor_layer_norm" if network == "actor" else "layer_norm"]
        return {
            "pre_linear_modules": pre if options["batch_norm"] else None,
            "post_linear_modules": [nn.LayerNorm] if layer_norm else None,
            "network": self.network,
        }

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            **self.critic_options,
            **self.normalization,
            "target_networks": self.target_networks,
            "network": self.network,
            "normalize_observations": self.normalize_observations,
            "sale": self.sale_options is not None,
            **{f"sale_{name}": value for name, value in (self.sale_options or {}).items()},
            "critic_activation_fn": self.critic_activation_fn,
            "actor_q": self.actor_q,
            "checkpoint": self.has_checkpoint,
        }


MlpPolicy = DDPGExtPolicy


class CnnPolicy(DDPGExtPolicy):
    """DDPGExt policy for image observations: NatureCNN features extractor (see :class:`DDPGExtPolicy`)."""

    default_features_extractor_class = NatureCNN


class MultiInputPolicy(DDPGExtPolicy):
    """DDPGExt policy for ``Dict`` observations: SB3's ``CombinedExtractor`` (see :class:`DDPGExtPolicy`)."""

    default_features_extractor_class = CombinedExtractor

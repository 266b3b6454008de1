"""
Named configurations of DDPGExt, as plain keyword-argument dicts:

    from sb3_ddpg_ext import DDPGExt, presets
    model = DDPGExt("MlpPolicy", env, **presets.PRESETS["td3"], action_noise=...)

They hold what defines each agent (its networks, critic, replay and update rules); exploration noise,
``learning_starts`` and the budget depend on the task and are left to the caller (or to the
hyperparameter files). Use :func:`preset` for a copy that is safe to modify.
"""

import copy
from typing import Any

import torch as th
from torch import nn

from sb3_ddpg_ext.common.buffers import PrioritizedReplayBuffer
from sb3_ddpg_ext.common.validation import InvalidValueError

# CrossQ (Bhatt et al. 2024) on DDPG: BatchRenorm, no target networks, twin critics, actor updated
# every 3 critic updates, Adam with beta1 = 0.5. Critics are 256-256, not the paper's 2048 (sb3-contrib:
# 1024): wide critics cost several times more per update on a CPU (benchmarks/results/throughput.md); pass
# policy_kwargs=dict(net_arch=dict(pi=[256, 256], qf=[1024, 1024])) for sb3-contrib's sizes.
_CROSSQ: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 256,
    "policy_delay": 3,
    "policy_kwargs": {
        "net_arch": [256, 256],
        "n_critics": 2,
        "batch_norm": True,
        "optimizer_kwargs": {"betas": (0.5, 0.999)},
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    # SB3's DDPG: Lillicrap et al. 2016 with SB3's defaults (400-300 networks, one critic, lr 1e-3).
    "ddpg": {},
    # TD3 (Fujimoto et al. 2018), the settings of the authors' reference implementation: 256-256
    # networks, lr 3e-4, batch 256, twin critics, actor and targets updated every 2 critic updates,
    # target smoothing noise 0.2 clipped at 0.5.
    "td3": {
        "learning_rate": 3e-4,
        "batch_size": 256,
        "policy_delay": 2,
        "target_policy_noise": 0.2,
        "target_noise_clip": 0.5,
        "policy_kwargs": {"net_arch": [256, 256], "n_critics": 2},
    },
    # D4PG (Barth-Maron et al. 2018): categorical critic on 51 atoms, 5-step returns, prioritized replay,
    # lr 1e-4, 400-300 networks. The support [-150, 150] is the paper's for the DeepMind control suite:
    # set v_min/v_max to cover your task's returns (see the README).
    "d4pg": {
        "learning_rate": 1e-4,
        "batch_size": 256,
        "n_steps": 5,
        "replay_buffer_class": PrioritizedReplayBuffer,
        "replay_buffer_kwargs": {"alpha": 0.6, "beta": 0.4},
        "policy_kwargs": {"net_arch": [400, 300], "critic": "categorical", "n_atoms": 51, "v_min": -150.0, "v_max": 150.0},
    },
    # CrossQ (above).
    "crossq": _CROSSQ,
    # TD7 (Fujimoto et al. 2023), the settings of the authors' reference implementation (sfujim/TD7): TD3's update
    # (lr 3e-4, batch 256, twin critics, delay 2, target smoothing 0.2 clipped at 0.5) with SALE embeddings (256,
    # 256-256 ELU encoders), ELU critics and a ReLU actor (256-256), the actor ascending the mean of both critics,
    # LAP (alpha 0.4, min priority 1, Huber loss), hard target copies every 250 updates with value clipping, and
    # policy checkpoints (one-episode assessments for 750k updates, then 20; bar lowered by 0.9).
    "td7": {
        "learning_rate": 3e-4,
        "batch_size": 256,
        "policy_delay": 2,
        "target_policy_noise": 0.2,
        "target_noise_clip": 0.5,
        "tau": 1.0,
        "target_update_interval": 250,
        "target_value_clipping": True,
        "policy_checkpoints": True,
        "replay_buffer_class": PrioritizedReplayBuffer,
        "replay_buffer_kwargs": {"priority": "lap", "alpha": 0.4, "min_priority": 1.0},
        "policy_kwargs": {
            "net_arch": [256, 256],
            "n_critics": 2,
            "critic_activation_fn": nn.ELU,
            "actor_q": "mean",
            "sale": True,
            "sale_embedding_dim": 256,
            "sale_net_arch": [256, 256],
            "sale_activation_fn": nn.ELU,
        },
    },
    # SimBa (Lee et al. 2025) networks with TD3's update: running observation normalisation, residual blocks
    # (actor one of 128, critics two of 512: SimBa's DDPG sizes) and SimBa's optimiser, AdamW with lr 1e-4 and
    # weight decay 0.01; twin critics, delay 2 and target smoothing as TD3.
    "simba": {
        "learning_rate": 1e-4,
        "batch_size": 256,
        "policy_delay": 2,
        "target_policy_noise": 0.2,
        "target_noise_clip": 0.5,
        "policy_kwargs": {
            "network": "simba",
            "n_critics": 2,
            "optimizer_class": th.optim.AdamW,
            "optimizer_kwargs": {"weight_decay": 0.01},
        },
    },
    # What this project recommends: CrossQ's critics (BatchRenorm, no target networks) with 3-step returns.
    # The evidence (benchmarks/results/learning.md; README "Learning"): CrossQ-style critics learned fastest of
    # all presets and of SB3's DDPG and TD3 on InvertedPendulum-v5 and HalfCheetah-v5 (4x SB3's return after
    # 30k steps), with and without 3-step returns (within each other's intervals on Pendulum and
    # InvertedPendulum); the 3-step returns because every tuned entry in hyperparams/ddpg_ext.yml (3 tasks,
    # searched over all extensions) chose 3-5-step returns with normalised critics, and because they rescued
    # TD3 on InvertedPendulum-v5.
    # The same agent as the benchmark's `crossq-n3` variant (tested).
    "ext": {**copy.deepcopy(_CROSSQ), "n_steps": 3},
}


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """
    A deep copy of a preset, with top-level keys overridden (``policy_kwargs`` is merged key by key).

    :param name: one of :data:`PRESETS`
    :param overrides: DDPGExt keyword arguments to change
    """
    if name not in PRESETS:
        raise InvalidValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    kwargs = copy.deepcopy(PRESETS[name])
    policy_kwargs = {**kwargs.get("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
    kwargs.update(overrides)
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs

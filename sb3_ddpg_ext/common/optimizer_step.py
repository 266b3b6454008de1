"""One optimizer step on gradients held in tensors of our own, with Adam's fused kernel called directly."""

from collections.abc import Sequence

import torch as th

from sb3_ddpg_ext.common import torch_kernels


class OptimizerStep:
    """
    Apply ``optimizer`` to ``gradients`` (one tensor per parameter, in the optimizer's order).

    For ``Adam``/``AdamW`` with ``fused=True`` (DDPGExt's default) where the private kernels are in use
    (:data:`~sb3_ddpg_ext.common.torch_kernels.use_private_kernels`), the step calls the fused kernel on lists
    resolved once: the same kernel and arguments as ``optimizer.step()``, without its per-call Python. Its state
    (moments and step counts) stays in ``optimizer.state``, so saving, loading and a later ``optimizer.step()`` see
    it. Any other optimizer or torch release, or a fused Adam before its state exists, runs ``optimizer.step()`` itself
    (the public path, also tested).

    :param optimizer: the optimizer, with one parameter group
    :param parameters: its parameters
    :param gradients: their gradients, updated in place before each :meth:`step`
    :param allow_direct: whether the fused kernel may be called directly (default: whether the private kernels are in
        use); False takes the public path whatever the optimizer
    """

    def __init__(
        self,
        optimizer: th.optim.Optimizer,
        parameters: list[th.Tensor],
        gradients: list[th.Tensor],
        allow_direct: bool | None = None,
    ):
        if not self.matches(optimizer, parameters):
            raise ValueError("`parameters` must be the optimizer's single parameter group, in its order")
        self.optimizer = optimizer
        self.parameters = parameters
        # Detached views (same storage) for the fused kernel: in-place updates of them need no no_grad() context.
        self._parameter_data = [parameter.detach() for parameter in parameters]
        self.gradients = gradients
        self.allow_direct = torch_kernels.use_private_kernels if allow_direct is None else allow_direct
        self._states: list[list[th.Tensor]] | None = None
        self._packed_steps = th.zeros(0)
        self._one = th.ones(())  # a tensor increment: adding a Python number costs twice as much

    @staticmethod
    def matches(optimizer: th.optim.Optimizer, parameters: Sequence[th.Tensor]) -> bool:
        """Whether ``parameters`` are exactly the optimizer's one parameter group, in its order."""
        groups = optimizer.param_groups
        return len(groups) == 1 and [id(tensor) for tensor in groups[0]["params"]] == [id(tensor) for tensor in parameters]

    @property
    def direct(self) -> bool:
        """Whether the fused kernel can be called directly (an exact Adam/AdamW with ``fused=True``)."""
        group = self.optimizer.param_groups[0]
        return (
            self.allow_direct
            and type(self.optimizer) in (th.optim.Adam, th.optim.AdamW)
            and len(self.optimizer.param_groups) == 1
            and bool(group.get("fused"))
            and not group["capturable"]
            and not group["differentiable"]
        )

    def step(self) -> None:
        if self._states is None or not self._states_current():
            # The optimizer's state may be created here: normal tensors, even when called in inference mode.
            with th.inference_mode(False), th.no_grad():
                self._step_through_optimizer()
            return
        group = self.optimizer.param_groups[0]
        exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = self._states
        self._packed_steps.add_(self._one)  # every parameter's step count: they are views of this tensor
        kernel = th._fused_adamw_ if group.get("decoupled_weight_decay", False) else th._fused_adam_
        kernel(
            self._parameter_data,
            self.gradients,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs,
            steps,
            amsgrad=group["amsgrad"],
            lr=group["lr"],
            beta1=float(group["betas"][0]),
            beta2=float(group["betas"][1]),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            grad_scale=None,
            found_inf=None,
        )

    def _step_through_optimizer(self) -> None:
        for parameter, gradient in zip(self.parameters, self.gradients, strict=True):
            parameter.grad = gradient
        self.optimizer.step()
        if self.direct:
            state = [self.optimizer.state[parameter] for parameter in self.parameters]
            amsgrad = self.optimizer.param_groups[0]["amsgrad"]
            # The step counts packed into one tensor, each parameter's a view of it: one increment per step
            # instead of a loop over the parameters (the fused kernel reads them; Adam's own step still works).
            self._packed_steps = th.stack([entry["step"] for entry in state])
            for index, entry in enumerate(state):
                entry["step"] = self._packed_steps[index]
            self._states = [
                [entry["exp_avg"] for entry in state],
                [entry["exp_avg_sq"] for entry in state],
                [entry["max_exp_avg_sq"] for entry in state] if amsgrad else [],
                [entry["step"] for entry in state],
            ]

    def _states_current(self) -> bool:
        # load_state_dict (e.g. when a saved model is loaded) replaces the state tensors.
        assert self._states is not None
        return self.optimizer.state.get(self.parameters[0], {}).get("exp_avg") is self._states[0][0]

"""Adam for models with grid tables: torch's Adam, whose tables skip untouched rows.

A step's points reach only some rows of a grid table (8,192 points of a 3-D hash grid:
at most a quarter of its rows). :class:`GridAdam` steps every other parameter with
torch's Adam (``fused=True`` where the device has it) and each grid table by
instant-ngp's rule: a row whose gradient is all zero this step keeps its parameters and
moments; the others take torch's Adam update (same formula, same bias correction by the
global step). On the CPU the rows are stepped by the compiled kernel
(``kernels/grid_cpu.cpp``), which reads the gradient and touches only those rows;
elsewhere by PyTorch ops. The state is Adam's, key for key (``step``, ``exp_avg``,
``exp_avg_sq`` per parameter, one parameter group), so checkpoints load into either
optimiser and old runs' optimiser files load into this one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from . import grid_kernel

__all__ = ["GridAdam"]


class GridAdam(torch.optim.Adam):
    """``torch.optim.Adam`` over ``params``; the tensors in ``tables`` (``[rows, F]``) skip rows with zero gradient."""

    def __init__(self, params: Iterable[torch.nn.Parameter], tables: Iterable[torch.Tensor], **adam) -> None:
        super().__init__(params, **adam)
        self._tables = {id(t) for t in tables}

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = [(p, group, p.grad) for group in self.param_groups for p in group["params"]
                if id(p) in self._tables and p.grad is not None and _rows_apply(p, group)]
        for p, _, _ in held:
            p.grad = None  # hidden from torch's Adam, which skips parameters without a gradient
        try:
            super().step()
        finally:
            for p, _, grad in held:
                p.grad = grad
        for p, group, grad in held:
            self._step_rows(p, grad, group)
        return loss

    def _step_rows(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if not state:  # as torch's Adam initialises it
            on_device = group["fused"] or group["capturable"]
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu")
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        b1, b2 = group["betas"]
        lr, eps = float(group["lr"]), group["eps"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        lib = grid_kernel.cpu_library() if p.device.type == "cpu" else None
        if lib is not None and not isinstance(lib, str):
            step = float(state["step"])  # a CPU tensor: no device sync
            grad = grad.contiguous()
            lib.coordfit_adam_rows(p.shape[0], p.shape[1], p.data_ptr(), grad.data_ptr(), m.data_ptr(), v.data_ptr(),
                                   lr, b1, b2, eps, 1 - b1**step, math.sqrt(1 - b2**step), torch.get_num_threads())
            return
        # PyTorch ops (CUDA, or no compiled kernel): bias corrections as tensors, no host sync
        step = state["step"].to(p.device, torch.float32)
        touched = (grad != 0).any(dim=1, keepdim=True)
        new_m = torch.lerp(m, grad, 1 - b1)
        new_v = v * b2 + (1 - b2) * grad * grad
        denom = new_v.sqrt() / torch.sqrt(1 - b2**step) + eps
        m.copy_(torch.where(touched, new_m, m))
        v.copy_(torch.where(touched, new_v, v))
        p.sub_(torch.where(touched, lr / (1 - b1**step) * new_m / denom, 0.0))


def _rows_apply(p: torch.Tensor, group: dict) -> bool:
    """The row rule covers plain Adam on a contiguous fp32 ``[rows, F]`` table."""
    return (p.dim() == 2 and p.dtype == torch.float32 and p.is_contiguous() and not group["amsgrad"]
            and not group["maximize"] and group["weight_decay"] == 0 and not torch.is_tensor(group["lr"])
            and not group.get("differentiable", False))

"""RNN cells with the TensorFlow 1.x API and weight layout, in PyTorch.

Shapes use these letters throughout:

* ``B``: batch size
* ``F``: input depth (features per step), the cell's ``input_size``
* ``U``: ``num_units``, the width of the cell state ``c``
* ``P``: the width of the output ``h`` (``num_proj`` when an ``LSTMCell`` projects, else ``U``)

Every cell keeps its weights as TensorFlow does: one ``kernel`` of shape ``(F + P, k * U)``
whose first ``F`` rows multiply ``x_t`` and remaining rows multiply ``h_{t-1}``, and one ``bias``
of shape ``(k * U,)``, with ``k`` gate blocks (1 for ``BasicRNNCell``; 4 for LSTMs, in TF's order
i, j, f, o). So ``load_tf_weights`` is a plain copy and a TF 1.x checkpoint's numbers reproduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from models.rnn.structure import flatten

Activation = Callable[[torch.Tensor], torch.Tensor]


class LSTMStateTuple(NamedTuple):
    """An LSTM state: ``c`` (the memory, ``(B, U)``) and ``h`` (the output, ``(B, P)``)."""

    c: Any
    h: Any


def _zeros_for(size: Any, batch_size: int, dtype: torch.dtype, device: Any) -> Any:
    """Zeros shaped like the nested ``state_size`` ``size``; an int gives ``(batch_size, size)``."""
    if isinstance(size, int):
        return torch.zeros(batch_size, size, dtype=dtype, device=device)
    mapped = [_zeros_for(s, batch_size, dtype, device) for s in size]
    return type(size)(*mapped) if hasattr(size, "_fields") else tuple(mapped)


def _as_tensor(array: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)


class RNNCell(nn.Module):
    """Base class: a cell maps ``(inputs (B, F), state)`` to ``(output (B, P), new_state)``.

    Subclasses set ``num_gates`` and implement ``_step``. The weights are built when
    ``input_size`` is known: at construction when it is given, else on the first call (so build a
    lazily sized cell, with one call or ``build(input_size)``, before handing its parameters to an
    optimizer).
    """

    num_gates = 1

    def __init__(self, num_units: int, input_size: int | None = None) -> None:
        super().__init__()
        if num_units <= 0:
            raise ValueError(f"num_units must be positive, got {num_units}")
        self.num_units = num_units
        self._input_size: int | None = None
        if input_size is not None:
            self.build(input_size)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def state_size(self) -> Any:
        """An int, or a (named) tuple of ints: the widths of the state's tensors."""
        return self.num_units

    @property
    def output_size(self) -> int:
        return self.num_units

    @property
    def input_size(self) -> int | None:
        """The input depth ``F``, or None while the cell has not been built."""
        return self._input_size

    @property
    def _recurrent_width(self) -> int:
        """Width of the ``h_{t-1}`` rows of the kernel (``P``)."""
        return self.output_size

    # -- weights -----------------------------------------------------------------------------
    def build(self, input_size: int, device: Any = None) -> None:
        """Create the kernel ``(F + P, k * U)`` (Glorot-uniform, TF's default) and a zero bias."""
        if self._input_size is not None:
            if input_size != self._input_size:
                raise ValueError(
                    f"{type(self).__name__} was built for input depth {self._input_size}, "
                    f"got inputs of depth {input_size}"
                )
            return
        rows, cols = input_size + self._recurrent_width, self.num_gates * self.num_units
        bound = math.sqrt(6.0 / (rows + cols))
        self.kernel = nn.Parameter(torch.empty(rows, cols, device=device).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(cols, device=device))
        self._input_size = input_size
        self._build_extras(device)

    def _build_extras(self, device: Any) -> None:
        """Hook for cells with more weights than kernel and bias."""

    def load_tf_weights(self, kernel: Any, bias: Any) -> None:
        """Copy TF-layout weights: ``kernel`` ``(F + P, k * U)`` and ``bias`` ``(k * U,)``."""
        kernel, bias = np.asarray(kernel), np.asarray(bias)
        cols = self.num_gates * self.num_units
        if kernel.ndim != 2 or kernel.shape[1] != cols:
            raise ValueError(
                f"{type(self).__name__}({self.num_units}) expects a kernel of shape "
                f"(input_depth + {self._recurrent_width}, {cols}), got {kernel.shape}"
            )
        if bias.shape != (cols,):
            raise ValueError(f"expected a bias of shape ({cols},), got {bias.shape}")
        input_size = kernel.shape[0] - self._recurrent_width
        if input_size <= 0:
            raise ValueError(
                f"kernel has {kernel.shape[0]} rows, fewer than the {self._recurrent_width} "
                "recurrent rows this cell needs"
            )
        self.build(input_size)
        with torch.no_grad():
            self.kernel.copy_(_as_tensor(kernel, self.kernel))
            self.bias.copy_(_as_tensor(bias, self.bias))

    # -- running -----------------------------------------------------------------------------
    def zero_state(
        self, batch_size: int, dtype: torch.dtype = torch.float32, device: Any = None
    ) -> Any:
        """A state of zeros for ``batch_size`` sequences, in the structure of ``state_size``."""
        if device is None and self._input_size is not None:
            device = self.kernel.device
        return _zeros_for(self.state_size, batch_size, dtype, device)

    def forward(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One step: ``inputs`` ``(B, F)`` and ``state`` to ``(output (B, P), new_state)``."""
        if inputs.dim() != 2:
            raise ValueError(f"cell inputs must be (B, F), got shape {tuple(inputs.shape)}")
        self.build(inputs.shape[1], device=inputs.device)
        batch = inputs.shape[0]
        for leaf in flatten(state):
            if leaf.shape[0] != batch:
                raise ValueError(f"state batch {leaf.shape[0]} differs from inputs batch {batch}")
        return self._step(inputs, state)

    def _gates(self, inputs: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        """``concat([x_t, h_{t-1}]) @ kernel + bias``: ``(B, k * U)``."""
        return torch.cat([inputs, h_prev], dim=1) @ self.kernel + self.bias

    def _step(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, input_size={self._input_size}"


class BasicRNNCell(RNNCell):
    """``h_t = act(concat([x_t, h_{t-1}]) @ kernel + bias)``; output and state are one tensor."""

    def __init__(
        self, num_units: int, activation: Activation | None = None, input_size: int | None = None
    ) -> None:
        self.activation = activation or torch.tanh
        super().__init__(num_units, input_size)

    def _step(self, inputs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.activation(self._gates(inputs, state))
        return output, output


class BasicLSTMCell(RNNCell):
    """TF's ``BasicLSTMCell``: gates i, j, f, o with ``forget_bias`` added to f at run time.

    ``new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * act(j)`` and
    ``new_h = act(new_c) * sigmoid(o)``; returns ``(new_h, LSTMStateTuple(new_c, new_h))``, or
    with ``state_is_tuple=False`` the state ``concat([c, h])`` of shape ``(B, 2U)``.
    """

    num_gates = 4

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Activation | None = None,
        input_size: int | None = None,
    ) -> None:
        self.forget_bias = float(forget_bias)
        self.state_is_tuple = state_is_tuple
        self.activation = activation or torch.tanh
        super().__init__(num_units, input_size)

    @property
    def state_size(self) -> Any:
        if self.state_is_tuple:
            return LSTMStateTuple(self.num_units, self.output_size)
        return self.num_units + self.output_size

    def _split_state(self, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.state_is_tuple:
            c, h = state
            return c, h
        return state[:, : self.num_units], state[:, self.num_units :]

    def _pack_state(self, c: torch.Tensor, h: torch.Tensor) -> Any:
        return LSTMStateTuple(c, h) if self.state_is_tuple else torch.cat([c, h], dim=1)

    def _step(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        c, h = self._split_state(state)
        i, j, f, o = self._gates(inputs, h).chunk(4, dim=1)
        new_c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * self.activation(j)
        new_h = self.activation(new_c) * torch.sigmoid(o)
        return new_h, self._pack_state(new_c, new_h)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, forget_bias={self.forget_bias}"


class LSTMCell(BasicLSTMCell):
    """TF's ``LSTMCell``: ``BasicLSTMCell`` plus optional peepholes, cell clipping and projection.

    With its defaults it computes exactly what ``BasicLSTMCell`` computes. Peepholes add
    ``w_f_diag * c_{t-1}`` to f, ``w_i_diag * c_{t-1}`` to i and ``w_o_diag * c_t`` to o (each
    ``(U,)``); ``cell_clip`` clips ``c_t``; ``num_proj`` projects the output with a
    ``projection_kernel`` of shape ``(U, P)``, then ``proj_clip`` clips it.
    """

    # Created by ``_build_extras`` when configured (declared here for type checkers).
    w_i_diag: nn.Parameter
    w_f_diag: nn.Parameter
    w_o_diag: nn.Parameter
    projection_kernel: nn.Parameter

    def __init__(
        self,
        num_units: int,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Activation | None = None,
        input_size: int | None = None,
    ) -> None:
        self.use_peepholes = use_peepholes
        self.cell_clip = cell_clip
        self.num_proj = num_proj
        self.proj_clip = proj_clip
        super().__init__(num_units, forget_bias, state_is_tuple, activation, input_size)

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units

    def _build_extras(self, device: Any) -> None:
        if self.use_peepholes:
            bound = math.sqrt(3.0 / self.num_units)
            for name in ("w_i_diag", "w_f_diag", "w_o_diag"):
                weight = torch.empty(self.num_units, device=device).uniform_(-bound, bound)
                setattr(self, name, nn.Parameter(weight))
        if self.num_proj:
            bound = math.sqrt(6.0 / (self.num_units + self.num_proj))
            weight = torch.empty(self.num_units, self.num_proj, device=device)
            self.projection_kernel = nn.Parameter(weight.uniform_(-bound, bound))

    def load_tf_weights(  # type: ignore[override]
        self,
        kernel: Any,
        bias: Any,
        *,
        w_i_diag: Any = None,
        w_f_diag: Any = None,
        w_o_diag: Any = None,
        projection_kernel: Any = None,
    ) -> None:
        """Copy TF-layout weights; peephole diagonals and the projection kernel when configured."""
        super().load_tf_weights(kernel, bias)
        extras = {"w_i_diag": w_i_diag, "w_f_diag": w_f_diag, "w_o_diag": w_o_diag}
        if self.use_peepholes:
            missing = [name for name, value in extras.items() if value is None]
            if missing:
                raise ValueError(f"use_peepholes=True needs {', '.join(missing)}")
        elif any(value is not None for value in extras.values()):
            raise ValueError("peephole weights given to a cell built with use_peepholes=False")
        if self.num_proj and projection_kernel is None:
            raise ValueError(f"num_proj={self.num_proj} needs projection_kernel")
        if not self.num_proj and projection_kernel is not None:
            raise ValueError("projection_kernel given to a cell without num_proj")
        named = dict(extras, projection_kernel=projection_kernel)
        with torch.no_grad():
            for name, value in named.items():
                if value is None:
                    continue
                target = getattr(self, name)
                array = np.asarray(value)
                if array.shape != tuple(target.shape):
                    raise ValueError(
                        f"{name}: expected shape {tuple(target.shape)}, got {array.shape}"
                    )
                target.copy_(_as_tensor(array, target))

    def _step(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        c, h = self._split_state(state)
        i, j, f, o = self._gates(inputs, h).chunk(4, dim=1)
        if self.use_peepholes:
            f = f + self.w_f_diag * c
            i = i + self.w_i_diag * c
        new_c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * self.activation(j)
        if self.cell_clip is not None:
            new_c = new_c.clamp(-self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            o = o + self.w_o_diag * new_c
        new_h = torch.sigmoid(o) * self.activation(new_c)
        if self.num_proj:
            new_h = new_h @ self.projection_kernel
            if self.proj_clip is not None:
                new_h = new_h.clamp(-self.proj_clip, self.proj_clip)
        return new_h, self._pack_state(new_c, new_h)


class MultiRNNCell(RNNCell):
    """A stack of cells, possibly of different sizes; cell ``n`` reads the output of cell ``n-1``.

    The state is a tuple with one state per cell (``state_is_tuple=True``), or the concatenation of
    every cell's flattened state, ``(B, sum of widths)``, when ``state_is_tuple=False``.
    """

    cells: Sequence[RNNCell]  # an nn.ModuleList of RNNCell at run time

    def __init__(self, cells: Sequence[RNNCell], state_is_tuple: bool = True) -> None:
        if not cells:
            raise ValueError("MultiRNNCell needs at least one cell")
        nn.Module.__init__(self)
        self.cells = nn.ModuleList(cells)  # type: ignore[assignment]
        self.state_is_tuple = state_is_tuple
        self.num_units = cells[-1].num_units

    @property
    def state_size(self) -> Any:
        sizes = tuple(cell.state_size for cell in self.cells)
        if self.state_is_tuple:
            return sizes
        return sum(sum(_widths(size)) for size in sizes)

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    @property
    def input_size(self) -> int | None:
        return self.cells[0].input_size

    def build(self, input_size: int, device: Any = None) -> None:
        for cell in self.cells:
            cell.build(input_size, device)
            input_size = cell.output_size

    def load_tf_weights(self, weights: Sequence[tuple[Any, Any]]) -> None:  # type: ignore[override]
        """Load one ``(kernel, bias)`` pair per cell, bottom cell first."""
        if len(weights) != len(self.cells):
            raise ValueError(f"expected {len(self.cells)} (kernel, bias) pairs, got {len(weights)}")
        for n, (cell, (kernel, bias)) in enumerate(zip(self.cells, weights, strict=True)):
            if n:  # cell n reads cell n-1's output: a kernel for another depth is refused
                cell.build(self.cells[n - 1].output_size)
            cell.load_tf_weights(kernel, bias)

    def zero_state(
        self, batch_size: int, dtype: torch.dtype = torch.float32, device: Any = None
    ) -> Any:
        states = tuple(cell.zero_state(batch_size, dtype, device) for cell in self.cells)
        return states if self.state_is_tuple else self._concat_states(states)

    def forward(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        states = state if self.state_is_tuple else self._split_states(state)
        if len(states) != len(self.cells):
            raise ValueError(f"expected {len(self.cells)} cell states, got {len(states)}")
        new_states = []
        output = inputs
        for cell, cell_state in zip(self.cells, states, strict=True):
            output, new_state = cell(output, cell_state)
            new_states.append(new_state)
        packed = tuple(new_states)
        return output, packed if self.state_is_tuple else self._concat_states(packed)

    def _concat_states(self, states: tuple[Any, ...]) -> torch.Tensor:
        return torch.cat([leaf for s in states for leaf in flatten(s)], dim=1)

    def _split_states(self, state: torch.Tensor) -> tuple[Any, ...]:
        states: list[Any] = []
        offset = 0
        for cell in self.cells:
            size = cell.state_size
            widths = _widths(size)
            parts = []
            for width in widths:
                parts.append(state[:, offset : offset + width])
                offset += width
            if isinstance(size, int):
                states.append(parts[0])
            else:
                states.append(type(size)(*parts) if hasattr(size, "_fields") else tuple(parts))
        if offset != state.shape[1]:
            raise ValueError(f"concatenated state has width {state.shape[1]}, expected {offset}")
        return tuple(states)

    def extra_repr(self) -> str:
        return f"state_is_tuple={self.state_is_tuple}"


def _widths(size: Any) -> list[int]:
    if isinstance(size, int):
        return [size]
    return [width for item in size for width in _widths(item)]

"""``dynamic_rnn``, ``bidirectional_dynamic_rnn`` and friends: TF 1.x RNN drivers in PyTorch.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input depth, ``P`` a cell's ``output_size``.
Batch-major inputs are ``(B, T, F)``; with ``time_major=True`` they are ``(T, B, F)``.

With ``sequence_length`` (``(B,)`` ints), sequence ``b`` has ``L_b`` real steps: its outputs at
``t >= L_b`` are exactly zero and its state stops changing after step ``L_b - 1``, so the final
state is the state after step ``L_b - 1`` (the initial state when ``L_b == 0``). Whatever the
padding holds never reaches a real step's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from models.rnn.cells import RNNCell
from models.rnn.structure import flatten, map_structure


def _lengths_tensor(
    sequence_length: Any, batch: int, max_time: int, device: torch.device
) -> torch.Tensor:
    lengths = torch.as_tensor(sequence_length, device=device).long()
    if lengths.shape != (batch,):
        raise ValueError(f"sequence_length must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (lengths.min() < 0 or lengths.max() > max_time):
        raise ValueError(
            f"sequence_length values must lie in [0, {max_time}], got "
            f"[{int(lengths.min())}, {int(lengths.max())}]"
        )
    return lengths


def _initial_state(
    cell: RNNCell, initial_state: Any, batch: int, dtype: torch.dtype | None, inputs: torch.Tensor
) -> Any:
    if initial_state is not None:
        for leaf in flatten(initial_state):
            if leaf.shape[0] != batch:
                raise ValueError(f"initial_state batch {leaf.shape[0]} differs from inputs {batch}")
        return initial_state
    return cell.zero_state(batch, dtype or inputs.dtype, inputs.device)


def dynamic_rnn(
    cell: RNNCell,
    inputs: torch.Tensor,
    sequence_length: Any = None,
    initial_state: Any = None,
    dtype: torch.dtype | None = None,
    time_major: bool = False,
) -> tuple[torch.Tensor, Any]:
    """Run ``cell`` over every step of ``inputs``.

    Args:
        cell: any ``RNNCell`` (``MultiRNNCell`` included).
        inputs: ``(B, T, F)``, or ``(T, B, F)`` when ``time_major``.
        sequence_length: ``(B,)`` real lengths; None means every sequence has ``T`` steps.
        initial_state: a state in the structure of ``cell.state_size``; zeros when None.
        dtype: dtype of the zero initial state (default: the inputs' dtype).
        time_major: whether ``inputs`` and ``outputs`` are time-major.

    Returns:
        ``(outputs, state)``: outputs ``(B, T, P)`` (``(T, B, P)`` if time-major), zero past each
        length; state: the final state, in the structure of ``cell.state_size``.
    """
    if inputs.dim() != 3:
        raise ValueError(f"inputs must be 3-D (B, T, F) or (T, B, F), got {tuple(inputs.shape)}")
    steps = inputs if time_major else inputs.transpose(0, 1)  # (T, B, F)
    max_time, batch = steps.shape[0], steps.shape[1]
    state = _initial_state(cell, initial_state, batch, dtype, inputs)
    lengths = None
    run_steps = max_time
    if sequence_length is not None:
        lengths = _lengths_tensor(sequence_length, batch, max_time, inputs.device)
        # Steps past the longest sequence change nothing, so they are not computed (as in TF).
        run_steps = int(lengths.max()) if batch else 0

    outputs: list[torch.Tensor] = []
    for t in range(run_steps):
        output, new_state = cell(steps[t], state)
        if lengths is not None:
            alive = (t < lengths).unsqueeze(1)  # (B, 1): True while step t is a real step
            output = torch.where(alive, output, torch.zeros_like(output))
            new_state = map_structure(
                lambda new, old, alive=alive: torch.where(alive, new, old), new_state, state
            )
        outputs.append(output)
        state = new_state
    if run_steps < max_time or not outputs:
        pad = steps.new_zeros(max_time - run_steps, batch, cell.output_size)
        stacked = torch.cat([torch.stack(outputs), pad]) if outputs else pad
    else:
        stacked = torch.stack(outputs)
    return (stacked if time_major else stacked.transpose(0, 1)), state


def reverse_sequence(
    inputs: torch.Tensor, sequence_length: Any = None, time_major: bool = False
) -> torch.Tensor:
    """Reverse each sequence within its own length; steps past the length stay where they are.

    ``inputs`` is ``(B, T, ...)`` (``(T, B, ...)`` if time-major); ``sequence_length`` ``(B,)``,
    None meaning full length. Step ``t < L_b`` of sequence ``b`` becomes step ``L_b - 1 - t``.
    """
    time_dim = 0 if time_major else 1
    max_time, batch = inputs.shape[time_dim], inputs.shape[1 - time_dim]
    if sequence_length is None:
        return inputs.flip(time_dim)
    lengths = _lengths_tensor(sequence_length, batch, max_time, inputs.device)
    t = torch.arange(max_time, device=inputs.device).unsqueeze(0)  # (1, T)
    source = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # (B, T)
    if time_major:
        source = source.transpose(0, 1)  # (T, B)
    index = source.reshape(source.shape + (1,) * (inputs.dim() - 2)).expand_as(inputs)
    return inputs.gather(time_dim, index)


def bidirectional_dynamic_rnn(
    cell_fw: RNNCell,
    cell_bw: RNNCell,
    inputs: torch.Tensor,
    sequence_length: Any = None,
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: torch.dtype | None = None,
    time_major: bool = False,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[Any, Any]]:
    """Run ``cell_fw`` forwards and ``cell_bw`` backwards over each sequence.

    The backward cell reads ``x[L-1], ..., x[0]`` of each sequence (reversed within its own
    length, never a full-length flip); its outputs are put back in input order, so
    ``out_bw[t]`` belongs to input step ``t`` and the backward final ``h`` equals ``out_bw[0]``.

    Returns:
        ``((out_fw, out_bw), (state_fw, state_bw))``; outputs ``(B, T, P)`` each (time-major:
        ``(T, B, P)``), zero past each length.
    """
    out_fw, state_fw = dynamic_rnn(
        cell_fw, inputs, sequence_length, initial_state_fw, dtype, time_major
    )
    reversed_inputs = reverse_sequence(inputs, sequence_length, time_major)
    out_bw_reversed, state_bw = dynamic_rnn(
        cell_bw, reversed_inputs, sequence_length, initial_state_bw, dtype, time_major
    )
    out_bw = reverse_sequence(out_bw_reversed, sequence_length, time_major)
    return (out_fw, out_bw), (state_fw, state_bw)


def stack_bidirectional_dynamic_rnn(
    cells_fw: Sequence[RNNCell],
    cells_bw: Sequence[RNNCell],
    inputs: torch.Tensor,
    initial_states_fw: Sequence[Any] | None = None,
    initial_states_bw: Sequence[Any] | None = None,
    dtype: torch.dtype | None = None,
    sequence_length: Any = None,
    time_major: bool = False,
) -> tuple[torch.Tensor, tuple[Any, ...], tuple[Any, ...]]:
    """Stacked bidirectional layers: layer ``n`` reads ``concat([out_fw, out_bw])`` of ``n-1``.

    Mirrors ``tf.contrib.rnn.stack_bidirectional_dynamic_rnn``.

    Returns:
        ``(outputs, states_fw, states_bw)``: outputs ``(B, T, P_fw + P_bw)`` of the top layer and
        one final state per layer and direction.
    """
    if len(cells_fw) != len(cells_bw) or not cells_fw:
        raise ValueError("cells_fw and cells_bw must be non-empty lists of the same length")
    layer_input = inputs
    states_fw, states_bw = [], []
    for n, (cell_fw, cell_bw) in enumerate(zip(cells_fw, cells_bw, strict=True)):
        init_fw = initial_states_fw[n] if initial_states_fw else None
        init_bw = initial_states_bw[n] if initial_states_bw else None
        (out_fw, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
            cell_fw, cell_bw, layer_input, sequence_length, init_fw, init_bw, dtype, time_major
        )
        layer_input = torch.cat([out_fw, out_bw], dim=-1)
        states_fw.append(state_fw)
        states_bw.append(state_bw)
    return layer_input, tuple(states_fw), tuple(states_bw)


def static_rnn(
    cell: RNNCell,
    inputs: Sequence[torch.Tensor],
    initial_state: Any = None,
    dtype: torch.dtype | None = None,
    sequence_length: Any = None,
) -> tuple[list[torch.Tensor], Any]:
    """``tf.nn.static_rnn``: ``inputs`` and outputs are lists of ``T`` tensors ``(B, ...)``."""
    if not inputs:
        raise ValueError("static_rnn needs at least one step of inputs")
    outputs, state = dynamic_rnn(
        cell, torch.stack(list(inputs)), sequence_length, initial_state, dtype, time_major=True
    )
    return list(outputs.unbind(0)), state

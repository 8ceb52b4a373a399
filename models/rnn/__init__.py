"""The TensorFlow 1.x RNN vocabulary in PyTorch: cells, state tuples and the RNN drivers."""

from models.rnn.cells import (
    BasicLSTMCell,
    BasicRNNCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    RNNCell,
)
from models.rnn.functions import (
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    reverse_sequence,
    stack_bidirectional_dynamic_rnn,
    static_rnn,
)

__all__ = [
    "BasicLSTMCell",
    "BasicRNNCell",
    "LSTMCell",
    "LSTMStateTuple",
    "MultiRNNCell",
    "RNNCell",
    "bidirectional_dynamic_rnn",
    "dynamic_rnn",
    "reverse_sequence",
    "stack_bidirectional_dynamic_rnn",
    "static_rnn",
]

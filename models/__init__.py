"""The models, in PyTorch: the TensorFlow 1.x RNN vocabulary and the classifiers built on it.

Modules: ``rnn`` (cells, ``LSTMStateTuple``, ``MultiRNNCell``, ``zero_state``, ``dynamic_rnn``,
``bidirectional_dynamic_rnn``: the readable cell-by-cell reference), ``architectures``
(``LSTMClassifier``: stacked or bidirectional, a fused ``nn.LSTM`` per layer, and
``reference_forward`` running it cell by cell), ``weights`` (TF, torch and ONNX gate layouts),
``topology`` (the two wirings of bidirectional stacks), ``checkpoint`` (``.pt`` files: weights
plus the architecture), ``data`` (JapaneseVowels), ``train`` (``python -m models.train``).
Nothing here imports ``export`` or ``service``.
"""

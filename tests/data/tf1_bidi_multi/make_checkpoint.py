"""Train and save ``bidi_multi_lstm``: ``tf.nn.bidirectional_dynamic_rnn`` over one
``MultiRNNCell([LSTMCell(32), LSTMCell(24)])`` per direction, with real TensorFlow 1.x graph code.

This is the test data's generator, not part of the project: it needs TensorFlow (which the
project never imports) and the project's ``models.data`` (numpy only) for JapaneseVowels. Run
from the repository root, in an environment with ``tensorflow-cpu``, ``tf_keras`` and numpy::

    PYTHONPATH=. /tmp/tfvenv/bin/python tests/data/tf1_bidi_multi/make_checkpoint.py \\
        --data-dir "$(dirname "$(python -c 'from models.data import find_packaged_file as f; \\
print(f("JapaneseVowels_TRAIN.ts"))')")" --out tests/data/tf1_bidi_multi/bidi_multi_lstm

It follows ``tests/data/tf1/README.md``: raw inputs, Adam (0.005), 600 steps of batch 32 with
``sequence_length``, seed 1234, ``tf.compat.v1.train.Saver`` (V2, relative paths, no ``.meta``),
``expected.npz`` on the same eight test sequences padded to 29 with 1000.0, and a
``manifest.json`` that also works as the importer's description. Shapes: ``B`` batch, ``T``
time, ``F = 12`` features, ``C = 9`` classes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Any

# tf.nn.rnn_cell lives in Keras 2 (the tf_keras package); with Keras 3 TensorFlow refuses it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.data import SequenceDataset, load_japanese_vowels  # noqa: E402
from padding import pad_sequences  # noqa: E402

SEED = 1234
LAYERS = (32, 24)
STEPS = 600
BATCH_SIZE = 32
LEARNING_RATE = 0.005
PAD_VALUE = 1000.0
TEST_INDICES = (7, 10, 42, 62, 136, 198, 215, 254)
"""The eight test sequences of ``tests/data/tf1/*/expected.npz`` (lengths 29 ... 14)."""

tf1 = tf.compat.v1


def build_graph(features: int, classes: int) -> dict[str, Any]:
    """The graph: placeholders, per-layer per-direction final states, head, loss and train op."""
    x = tf1.placeholder(tf.float32, [None, None, features], name="inputs")  # (B, T, F)
    lengths = tf1.placeholder(tf.int32, [None], name="lengths")  # (B,)
    targets = tf1.placeholder(tf.int32, [None], name="targets")  # (B,)

    def stack() -> tf1.nn.rnn_cell.MultiRNNCell:
        return tf1.nn.rnn_cell.MultiRNNCell(
            [tf1.nn.rnn_cell.LSTMCell(units, forget_bias=1.0) for units in LAYERS]
        )

    # Each direction's layer n reads only that direction's layer n-1; concatenated at the top.
    (out_fw, out_bw), (states_fw, states_bw) = tf1.nn.bidirectional_dynamic_rnn(
        stack(), stack(), x, sequence_length=lengths, dtype=tf.float32
    )
    top = tf.concat([states_fw[-1].h, states_bw[-1].h], axis=1)  # (B, 2 * 24)
    with tf1.variable_scope("softmax"):
        w = tf1.get_variable("W", [2 * LAYERS[-1], classes])
        b = tf1.get_variable("b", [classes], initializer=tf1.zeros_initializer())
    logits = tf.matmul(top, w) + b  # (B, C)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    )
    global_step = tf1.train.get_or_create_global_step()
    train_op = tf1.train.AdamOptimizer(LEARNING_RATE).minimize(loss, global_step=global_step)
    fetches: dict[str, Any] = {
        "logits": logits,
        "probs": tf.nn.softmax(logits),
        "outputs_fw": out_fw,
        "outputs_bw": out_bw,
    }
    for n in range(len(LAYERS)):
        for way, states in (("fw", states_fw), ("bw", states_bw)):
            fetches[f"final_c_{n}_{way}"] = states[n].c
            fetches[f"final_h_{n}_{way}"] = states[n].h
    top_n = len(LAYERS) - 1
    for way in ("fw", "bw"):  # the top layer under bidi_lstm's names as well
        fetches[f"final_c_{way}"] = fetches[f"final_c_{top_n}_{way}"]
        fetches[f"final_h_{way}"] = fetches[f"final_h_{top_n}_{way}"]
    return {
        "x": x,
        "lengths": lengths,
        "targets": targets,
        "loss": loss,
        "train_op": train_op,
        "fetches": fetches,
    }


def accuracy(sess: tf1.Session, graph: dict[str, Any], data: SequenceDataset) -> int:
    """How many of ``data``'s sequences the model classifies correctly (zero padding)."""
    inputs, lengths = pad_sequences(data.sequences)
    logits = sess.run(graph["fetches"]["logits"], {graph["x"]: inputs, graph["lengths"]: lengths})
    return int(np.sum(np.argmax(logits, axis=1) == data.targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="folder with JapaneseVowels_*.ts")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    random.seed(SEED)
    np.random.seed(SEED)
    train = load_japanese_vowels("train", args.data_dir)
    test = load_japanese_vowels("test", args.data_dir)
    tf1.disable_eager_execution()
    tf1.reset_default_graph()
    tf1.set_random_seed(SEED)
    graph = build_graph(train.num_features, len(train.labels))
    order_rng = np.random.RandomState(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        order: list[int] = []
        for _ in range(STEPS):
            if len(order) < BATCH_SIZE:
                order += list(order_rng.permutation(len(train)))
            chosen, order = order[:BATCH_SIZE], order[BATCH_SIZE:]
            inputs, lengths = pad_sequences([train.sequences[i] for i in chosen])
            sess.run(
                graph["train_op"],
                {
                    graph["x"]: inputs,
                    graph["lengths"]: lengths,
                    graph["targets"]: train.targets[chosen],
                },
            )
        saver = tf1.train.Saver(write_version=tf1.train.SaverDef.V2, save_relative_paths=True)
        saver.save(sess, str(args.out / "model.ckpt"), write_meta_graph=False)
        variables = {v.op.name: v for v in tf1.global_variables()}
        shapes = {name: v.shape.as_list() for name, v in sorted(variables.items())}
        dtypes = {name: v.dtype.base_dtype.name for name, v in sorted(variables.items())}
        model_variables = sorted(v.op.name for v in tf1.trainable_variables())
        train_correct = accuracy(sess, graph, train)
        test_correct = accuracy(sess, graph, test)

        chosen = [test.sequences[i] for i in TEST_INDICES]
        inputs, lengths = pad_sequences(chosen, pad_value=PAD_VALUE)
        results = sess.run(graph["fetches"], {graph["x"]: inputs, graph["lengths"]: lengths})
    expected = {
        "inputs": inputs.astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "targets": test.targets[list(TEST_INDICES)].astype(np.int32),
        "test_indices": np.array(TEST_INDICES, dtype=np.int32),
        "pad_value": np.float32(PAD_VALUE),
        **{key: np.asarray(value, dtype=np.float32) for key, value in results.items()},
    }
    np.savez(args.out / "expected.npz", **expected)
    write_manifest(
        args.out,
        train,
        test,
        shapes,
        dtypes,
        model_variables,
        expected,
        train_correct,
        test_correct,
    )


def write_manifest(
    out: Path,
    train: SequenceDataset,
    test: SequenceDataset,
    shapes: dict[str, list[int]],
    dtypes: dict[str, str],
    model_variables: list[str],
    expected: dict[str, np.ndarray],
    train_correct: int,
    test_correct: int,
) -> None:
    """``manifest.json`` in the form of ``tests/data/tf1/*/manifest.json``, plus ``topology``."""
    cells = [
        {
            "type": "LSTMCell",
            "num_units": units,
            "forget_bias": 1.0,
            "activation": "tanh",
            "state_is_tuple": True,
            "direction": way,
            "scope": f"bidirectional_rnn/{way}/multi_rnn_cell/cell_{n}/lstm_cell",
        }
        for way in ("fw", "bw")
        for n, units in enumerate(LAYERS)
    ]
    manifest = {
        "model": out.name,
        "framework": f"tensorflow {tf.__version__} (tf.compat.v1)",
        "checkpoint": "model.ckpt",
        "checkpoint_format": "V2 (model.ckpt.index + model.ckpt.data-00000-of-00001)",
        "graph": "bidirectional_dynamic_rnn(MultiRNNCell([LSTMCell(32), LSTMCell(24)]), "
        "MultiRNNCell([LSTMCell(32), LSTMCell(24)]), sequence_length=...)",
        "cells": cells,
        "bidirectional": True,
        "topology": "per_direction",
        "time_major": False,
        "input_depth": train.num_features,
        "num_classes": len(train.labels),
        "labels": list(train.labels),
        "label_index": "logit k corresponds to labels[k]",
        "variables": shapes,
        "variable_dtypes": dtypes,
        "model_variables": model_variables,
        "head": "logits = concat([final h fw top, final h bw top], axis=1) [48] @ softmax/W "
        "+ softmax/b",
        "kernel_layout": "kernel [input_depth + num_units, 4*num_units], rows = concat([x_t, "
        "h_{t-1}]), column blocks in gate order i, j, f, o; forget_bias added to f at run time "
        "(not stored); layer 1 of each direction reads that direction's layer 0 (32 wide)",
        "preprocessing": "none (raw 12 LPC cepstrum coefficients)",
        "test_accuracy": test_correct / len(test),
        "test_correct": test_correct,
        "test_size": len(test),
        "train_accuracy": train_correct / len(train),
        "training": {
            "data": f"JapaneseVowels_TRAIN.ts (aeon), {len(train)} sequences",
            "optimizer": f"AdamOptimizer(learning_rate={LEARNING_RATE})",
            "loss": "sparse_softmax_cross_entropy_with_logits, mean over batch",
            "steps": STEPS,
            "batch_size": BATCH_SIZE,
            "seed": SEED,
        },
        "expected": {
            "file": "expected.npz",
            "batch": len(TEST_INDICES),
            "padded_length": int(expected["inputs"].shape[1]),
            "pad_value": PAD_VALUE,
            "keys": {
                key: [str(value.dtype), list(value.shape)]
                for key, value in sorted(expected.items())
            },
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()

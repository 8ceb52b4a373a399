"""Train an LSTM classifier on JapaneseVowels: ``python -m models.train --help``.

Softmax cross-entropy and Adam, progress per epoch, reproducible from ``--seed``; the
checkpoint holds the weights, the architecture config, the label names and the training record.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.architectures import STACKED, TOPOLOGIES, LSTMClassifier, LSTMClassifierConfig
from models.checkpoint import save_checkpoint
from models.data import SequenceDataset, iterate_batches, load_japanese_vowels

log = logging.getLogger("models.train")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; recorded in the checkpoint."""

    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: LSTMClassifier, dataset: SequenceDataset, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``dataset``."""
    model.eval()
    correct = 0
    for inputs, lengths, targets in iterate_batches(dataset, batch_size):
        logits = model(torch.from_numpy(inputs), torch.from_numpy(lengths)).logits
        correct += int((logits.argmax(dim=1).numpy() == targets).sum())
    return correct / len(dataset)


def train(
    config: LSTMClassifierConfig,
    train_set: SequenceDataset,
    test_set: SequenceDataset | None,
    settings: TrainSettings,
) -> tuple[LSTMClassifier, dict[str, Any]]:
    """Train a fresh model; returns it (in eval mode) and the training record."""
    seed_everything(settings.seed)
    model = LSTMClassifier(config)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(settings.seed)
    history = []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total_loss, correct = 0.0, 0
        for inputs, lengths, targets in iterate_batches(train_set, settings.batch_size, rng):
            target = torch.from_numpy(targets)
            logits = model(torch.from_numpy(inputs), torch.from_numpy(lengths)).logits
            loss = loss_fn(logits, target)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += int((logits.argmax(dim=1) == target).sum())
        row = {
            "epoch": epoch,
            "loss": total_loss / len(train_set),
            "train_accuracy": correct / len(train_set),
        }
        if test_set is not None:
            row["test_accuracy"] = evaluate(model, test_set)
        history.append(row)
        log.info(
            "epoch %3d/%d  loss %.4f  train acc %.4f%s",
            epoch,
            settings.epochs,
            row["loss"],
            row["train_accuracy"],
            f"  test acc {row['test_accuracy']:.4f}" if "test_accuracy" in row else "",
        )
    model.eval()
    record: dict[str, Any] = {
        "dataset": "JapaneseVowels",
        "settings": asdict(settings),
        "train_seconds": round(time.perf_counter() - started, 2),
        "train_accuracy": evaluate(model, train_set),
        "history": history,
    }
    if test_set is not None:
        record["test_accuracy"] = evaluate(model, test_set)
        record["test_size"] = len(test_set)
    return model, record


def build_parser() -> argparse.ArgumentParser:
    # Alike in shape only to export's parsers (export.cli): training flags, and models imports
    # nothing of export.
    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Train a stacked or bidirectional LSTM classifier on JapaneseVowels.",
    )
    parser.add_argument(
        "--arch",
        choices=("stacked", "bidirectional"),
        default="bidirectional",
        help="stacked unidirectional LSTM layers, or bidirectional ones (default: %(default)s)",
    )
    parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default=STACKED,
        help="bidirectional with two or more layers: each layer reads both directions of the "
        "layer below (stacked, as stack_bidirectional_dynamic_rnn and torch's nn.LSTM), or one "
        "stack per direction concatenated only at the top (per_direction, as "
        "bidirectional_dynamic_rnn over two MultiRNNCells) (default: %(default)s)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[128, 128],
        metavar="H",
        help="hidden width of each layer, bottom first (default: 128 128)",
    )
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=TrainSettings.weight_decay)
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="between layers and before the head"
    )
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--data-dir", type=Path, help="folder with JapaneseVowels_{TRAIN,TEST}.ts")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.pt)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_set = load_japanese_vowels("train", args.data_dir)
    test_set = load_japanese_vowels("test", args.data_dir)
    try:
        config = LSTMClassifierConfig(
            input_size=train_set.num_features,
            layer_sizes=tuple(args.layers),
            num_classes=len(train_set.labels),
            bidirectional=args.arch == "bidirectional",
            labels=train_set.labels,
            dropout=args.dropout,
            topology=args.topology,
        )
    except ValueError as error:  # e.g. --topology per_direction with one layer
        parser.error(str(error))
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
    )
    log.info(
        "training %s (%s) %s on JapaneseVowels: %d train / %d test sequences",
        config.architecture,
        config.topology,
        list(config.layer_sizes),
        len(train_set),
        len(test_set),
    )
    model, record = train(config, train_set, test_set, settings)
    save_checkpoint(args.out, model, record)
    log.info(
        "test accuracy %.4f (%d sequences); checkpoint written to %s",
        record["test_accuracy"],
        record["test_size"],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

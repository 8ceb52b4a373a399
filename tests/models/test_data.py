"""``models.data``: the ``.ts`` parser, batching and the JapaneseVowels loader (padding itself:
``tests/padding``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.data import (
    SequenceDataset,
    find_packaged_file,
    iterate_batches,
    load_japanese_vowels,
    parse_ts,
)

SMALL_TS = """\
# A comment line, then the header.
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true cat dog bird
@data
1.0,2.0:10.0,20.0:dog
# comments between series are skipped

0.5,1.5,2.5,3.5:-1,-2,-3,-4:cat
7:8:bird
"""


def test_parse_ts_variable_lengths_and_class_labels():
    sequences, targets, declared = parse_ts(SMALL_TS)
    assert declared == ["cat", "dog", "bird"]
    assert targets == ["dog", "cat", "bird"]
    assert [s.shape for s in sequences] == [(2, 2), (4, 2), (1, 2)]
    assert all(s.dtype == np.float32 for s in sequences)
    np.testing.assert_array_equal(sequences[0], [[1.0, 10.0], [2.0, 20.0]])
    np.testing.assert_array_equal(sequences[1][:, 1], [-1, -2, -3, -4])
    np.testing.assert_array_equal(sequences[2], [[7.0, 8.0]])


def test_parse_ts_header_is_case_insensitive_and_labels_optional():
    text = "@CLASSLABEL false\n@DATA\n1,2,3:x\n"
    sequences, targets, declared = parse_ts(text)
    assert declared == [] and targets == ["x"]
    assert sequences[0].shape == (3, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@classLabel true a\n", "no @data section"),
        ("@data\n", "no @data section"),
        ("@data\n1,2,3\n", "line 2: expected dimensions and a class label"),
        ("@data\n1,2:3:a\n", "line 2: dimensions of one series have different lengths"),
        ("@data\n1,2:3,4:a\n1,2:a\n", "line 3: 1 dimensions, the first series has 2"),
        ("@data\n1,x:3,4:a\n", "could not convert"),
        ("@data\n1,,2:a\n", "could not convert"),
    ],
)
def test_parse_ts_malformed_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_ts(text)


def _write_split(folder, split: str, text: str) -> None:
    (folder / f"JapaneseVowels_{split.upper()}.ts").write_text(text)


def test_loader_from_data_dir_maps_declared_labels(tmp_path):
    _write_split(tmp_path, "train", SMALL_TS)
    dataset = load_japanese_vowels("train", data_dir=tmp_path)
    assert dataset.labels == ("cat", "dog", "bird")
    np.testing.assert_array_equal(dataset.targets, [1, 0, 2])
    assert dataset.targets.dtype == np.int64
    assert len(dataset) == 3 and dataset.num_features == 2
    np.testing.assert_array_equal(dataset.lengths, [2, 4, 1])


def test_loader_sorts_undeclared_labels_and_rejects_unknown_ones(tmp_path):
    _write_split(tmp_path, "test", "@data\n1:b\n2:a\n3:b\n")
    dataset = load_japanese_vowels("test", data_dir=tmp_path)
    assert dataset.labels == ("a", "b")
    np.testing.assert_array_equal(dataset.targets, [1, 0, 1])
    _write_split(tmp_path, "train", "@classLabel true a b\n@data\n1:a\n2:zebra\n")
    with pytest.raises(ValueError, match=r"class labels \['zebra'\] are not declared"):
        load_japanese_vowels("train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_japanese_vowels("validation", data_dir=tmp_path)


def test_find_packaged_file_missing():
    with pytest.raises(FileNotFoundError, match="install the 'aeon' package"):
        find_packaged_file("NoSuchDataset_TRAIN.ts")


def test_real_japanese_vowels():
    """The UCI set: 270 train / 370 test utterances, 12 coefficients, lengths 7..29, 9 speakers."""
    train, test = load_japanese_vowels("train"), load_japanese_vowels("test")
    assert len(train) == 270 and len(test) == 370
    labels = tuple(str(k) for k in range(1, 10))
    for dataset in (train, test):
        assert dataset.labels == labels
        assert dataset.num_features == 12
        assert all(s.shape[1] == 12 and s.dtype == np.float32 for s in dataset.sequences)
        assert set(dataset.targets.tolist()) == set(range(9))
        assert all(np.isfinite(s).all() for s in dataset.sequences)
    lengths = np.concatenate([train.lengths, test.lengths])
    assert lengths.min() == 7 and lengths.max() == 29
    assert len(set(lengths.tolist())) > 10  # really variable length


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=6), st.integers(1, 4))
def test_iterate_batches_covers_every_sequence_once(lengths, batch_size):
    sequences = [np.full((n, 2), k, dtype=np.float32) for k, n in enumerate(lengths)]
    dataset = SequenceDataset(sequences, np.arange(len(lengths), dtype=np.int64), ("x",))
    seen = []
    for inputs, batch_lengths, targets in iterate_batches(
        dataset, batch_size, np.random.default_rng(0)
    ):
        assert len(targets) <= batch_size
        assert inputs.shape[1] == max(batch_lengths)
        for row, target in enumerate(targets):
            assert batch_lengths[row] == lengths[target]
            assert np.all(inputs[row, : batch_lengths[row]] == target)
        seen.extend(targets.tolist())
    assert sorted(seen) == list(range(len(lengths)))
    in_order = [t for _, _, ts in iterate_batches(dataset, batch_size) for t in ts.tolist()]
    assert in_order == list(range(len(lengths)))
    again = [
        t
        for _, _, ts in iterate_batches(dataset, batch_size, np.random.default_rng(0))
        for t in ts.tolist()
    ]
    assert again == seen  # the same seed, the same order

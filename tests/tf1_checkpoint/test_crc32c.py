"""``tf1_checkpoint.crc32c``: the Castagnoli CRC of TF's files against RFC 3720's vectors and a
bitwise reference written out here, and the mask TF stores it under."""

from __future__ import annotations

import numpy as np
import pytest

from tf1_checkpoint.crc32c import crc32c, mask, unmask


def _bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4 test vectors
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
    ],
)
def test_crc32c_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected


@pytest.mark.parametrize("size", [1, 3, 4, 5, 4095, 4096, 4097, 10_007, 65_536])
def test_crc32c_vectorised_path_matches_bitwise(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == _bitwise_crc32c(data)


def test_crc_mask_round_trips() -> None:
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
    assert mask(0) != 0

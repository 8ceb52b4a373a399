"""CRC32C (Castagnoli), as TensorFlow's table and tensor-bundle files use it, in numpy.

TF stores *masked* CRCs (``mask``), because a CRC of data that itself holds CRCs is weak.
A byte-at-a-time Python loop runs at about 1 MB/s, too slow for real checkpoints, so long inputs
are cut into equal chunks that are stepped in parallel as numpy vectors, and the per-chunk CRCs
are then joined with a precomputed "advance by one chunk" operator. CRCs are linear over GF(2),
which is what makes both steps exact.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reflected
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_SMALL = 4096  # below this a plain loop is faster than setting up the vectors


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1)
    return table.astype(np.uint32)


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _raw_loop(register: int, data: bytes | memoryview) -> int:
    table = _TABLE_LIST
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


@lru_cache(maxsize=16)
def _advance_tables(length: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Byte-wise lookup tables of the linear map "feed ``length`` zero bytes to the register"."""
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(length):
        basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
    values = np.arange(256, dtype=np.uint32)
    tables = []
    for byte in range(4):
        table = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            table ^= np.where((values >> bit) & 1, basis[8 * byte + bit], np.uint32(0))
        tables.append([int(v) for v in table])
    return tables[0], tables[1], tables[2], tables[3]


def _raw_vectorised(data: np.ndarray) -> int:
    """Register after feeding ``data`` (uint8, len >= 4) to a zero register."""
    n = data.size
    chunk = min(8192, max(64, math.isqrt(n)))
    count = -(-n // chunk)
    # Leading zero bytes leave a zero register at zero, so padding in front changes nothing.
    padded = np.zeros(count * chunk, dtype=np.uint8)
    padded[count * chunk - n :] = data
    columns = np.ascontiguousarray(padded.reshape(count, chunk).T)  # (chunk, count)
    registers = np.zeros(count, dtype=np.uint32)
    for row in columns:
        registers = _TABLE[(registers ^ row) & 0xFF] ^ (registers >> 8)
    t0, t1, t2, t3 = _advance_tables(chunk)
    total = 0
    for register in registers.tolist():
        total = (
            t0[total & 0xFF]
            ^ t1[(total >> 8) & 0xFF]
            ^ t2[(total >> 16) & 0xFF]
            ^ t3[total >> 24]
            ^ register
        )
    return total


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The standard CRC32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    array = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    array = array.reshape(-1).view(np.uint8)
    if array.size < _SMALL:
        return _raw_loop(_U32, array.tobytes()) ^ _U32
    # Starting from 0xFFFFFFFF equals starting from 0 with the first four bytes inverted.
    head = array[:4] ^ np.uint8(0xFF)
    return _raw_vectorised(np.concatenate([head, array[4:]])) ^ _U32


def mask(crc: int) -> int:
    """TF/LevelDB's masked form of a CRC, the one written into files."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """Inverse of ``mask``."""
    rotated = (masked - _MASK_DELTA) & _U32
    return ((rotated >> 17) | (rotated << 15)) & _U32

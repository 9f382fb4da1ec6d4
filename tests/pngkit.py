"""One PNG encoder for the tests (zlib + struct), so no test file keeps its own copy."""

from __future__ import annotations

import random
import struct
import zlib


def png(width: int, height: int, seed: int = 0, *, noise: bool = False) -> bytes:
    """A real RGB PNG, distinct per ``seed``; ``noise`` keeps it from compressing away."""
    if noise:
        source = random.Random(seed)
        rows = b"".join(b"\x00" + source.randbytes(width * 3) for _ in range(height))
    else:
        line = bytes((seed + x) % 256 for x in range(width * 3))
        rows = b"".join(b"\x00" + line for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

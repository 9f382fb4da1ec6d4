"""Width, height and format of an image from its header bytes (PNG, JPEG, GIF, WebP).

Written for the simulator alone, independently of anything the gateway uses, so that a client
that mangles bytes is caught. Pure: ``ValueError`` for anything it cannot read.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


@dataclass(frozen=True)
class ImageInfo:
    """What the simulated ImageX reports about uploaded bytes (``format`` is lowercase)."""

    width: int
    height: int
    format: str


def _png(data: bytes) -> ImageInfo:
    if len(data) < 33:
        raise ValueError("PNG too short for an IHDR chunk")
    length, kind, width, height = struct.unpack(">I4sII", data[8:24])
    if length != 13 or kind != b"IHDR":
        raise ValueError("PNG does not start with an IHDR chunk")
    return ImageInfo(width, height, "png")


def _gif(data: bytes) -> ImageInfo:
    if len(data) < 10:
        raise ValueError("GIF too short for a logical screen descriptor")
    width, height = struct.unpack("<HH", data[6:10])
    return ImageInfo(width, height, "gif")


def _jpeg(data: bytes) -> ImageInfo:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageInfo(width, height, "jpeg")
        if marker == 0xD9 or length < 2:
            break
        pos += 2 + length
    raise ValueError("JPEG without a start-of-frame segment")


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if len(data) < (25 if chunk == b"VP8L" else 30):
        raise ValueError("WebP too short")
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("WebP VP8 start code missing")
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo(width & 0x3FFF, height & 0x3FFF, "webp")
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("WebP VP8L signature missing")
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "webp")
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo(width, height, "webp")
    raise ValueError("WebP chunk not VP8, VP8L or VP8X")


def image_info(data: bytes) -> ImageInfo:
    """The dimensions and format of ``data``, or ``ValueError`` when it is no PNG, JPEG, GIF or
    WebP image (or its header is broken, or a dimension is zero)."""
    if data.startswith(PNG_SIGNATURE):
        info = _png(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        info = _gif(data)
    elif data.startswith(b"\xff\xd8"):
        info = _jpeg(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        info = _webp(data)
    else:
        raise ValueError("not a PNG, JPEG, GIF or WebP image")
    if info.width <= 0 or info.height <= 0:
        raise ValueError("image has a zero dimension")
    return info


def describe(info: ImageInfo, data: bytes) -> str:
    """``<w>x<h> <format> sha256:<first 12 hex of sha256(data)>``, as chat replies show it."""
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"{info.width}x{info.height} {info.format} sha256:{digest}"


def seen_note(descriptions: list[str]) -> str:
    """`` [saw N image(s): a; b]`` for a non-empty list, else ""."""
    if not descriptions:
        return ""
    return f" [saw {len(descriptions)} image(s): {'; '.join(descriptions)}]"

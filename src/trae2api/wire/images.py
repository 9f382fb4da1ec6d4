"""Image bytes: identify PNG, JPEG, WebP and GIF by content and read their dimensions.

Owns ``ImageData`` (the validated bytes plus format, size and digest), ``inspect_image`` and
``decode_data_url`` for OpenAI ``image_url`` parts carrying ``data:`` URLs. Formats are decided
by magic bytes and header structure only, never by a declared MIME type or file name.

This module is pure: no I/O, clock or environment. Fetching remote images is
``trae2api.upstream.imagefetch``'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass, field
from urllib.parse import unquote

from trae2api.errors import InvalidRequest, NotAnImage, PayloadTooLarge

_MIMES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_VP8_START_CODE = b"\x9d\x01\x2a"
# JPEG markers without a length field: TEM, RST0..RST7 and SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})
# C0..CF are start-of-frame markers except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_WHITESPACE = re.compile(r"\s+")
# Declared types a client may honestly send for image bytes; anything else is refused early.
_NEUTRAL_MIMES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True)
class ImageData:
    """Image bytes whose format and dimensions were read from the content itself."""

    data: bytes = field(repr=False)
    format: str
    width: int
    height: int
    sha256: str

    @property
    def mime(self) -> str:
        """The MIME type of ``format``, e.g. ``image/png``."""
        return _MIMES[self.format]

    @property
    def extension(self) -> str:
        """The usual file extension, with its dot: ``.png``, ``.jpg``, ``.webp`` or ``.gif``."""
        return _EXTENSIONS[self.format]

    def data_url(self) -> str:
        """The image as a ``data:<mime>;base64,...`` URL."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def inspect_image(data: bytes, *, max_bytes: int, param: str | None = None) -> ImageData:
    """Validate ``data`` as a PNG, JPEG, WebP or GIF image and read its dimensions."""
    check_size(len(data), max_bytes=max_bytes, param=param)
    try:
        fmt, width, height = _identify(data)
    except (NotAnImage, struct.error, IndexError):
        raise _invalid(param) from None
    if width <= 0 or height <= 0:
        raise _invalid(param)
    return ImageData(
        data=data,
        format=fmt,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_size(size: int, *, max_bytes: int, param: str | None = None) -> None:
    """Refuse with 413 when ``size`` bytes exceed ``max_bytes`` (``MAX_IMAGE_BYTES``)."""
    if size > max_bytes:
        raise PayloadTooLarge(
            f"{_subject(param)} is larger than the limit of {max_bytes} bytes (MAX_IMAGE_BYTES)",
            param=param,
        )


def decode_data_url(url: str, *, max_bytes: int, param: str | None = None) -> ImageData:
    """Decode a base64 ``data:`` URL and validate its bytes with ``inspect_image``."""
    if url[:5].lower() != "data:" or "," not in url:
        raise _bad_data_url(param, "is not a data: URL (data:[<mime>];base64,<payload>)")
    header, payload = url[5:].split(",", 1)
    parts = [part.strip().lower() for part in header.split(";")]
    mime, options = parts[0], parts[1:]
    if mime not in _NEUTRAL_MIMES and not mime.startswith("image/"):
        raise _bad_data_url(param, f"declares {mime}, not an image")
    if not options or options[-1] != "base64":
        raise _bad_data_url(param, "must be base64-encoded (data:<mime>;base64,<payload>)")
    payload = _WHITESPACE.sub("", unquote(payload) if "%" in payload else payload)
    check_size(_decoded_length(payload), max_bytes=max_bytes, param=param)
    return inspect_image(_b64decode(payload, param), max_bytes=max_bytes, param=param)


def _decoded_length(payload: str) -> int:
    """How many bytes ``payload`` decodes to, computed without decoding it."""
    unpadded = len(payload.rstrip("="))
    return unpadded * 3 // 4


def _b64decode(payload: str, param: str | None) -> bytes:
    """Decode standard or URL-safe base64, tolerating missing padding."""
    if "-" in payload or "_" in payload:
        payload = payload.replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_data_url(param, "has an invalid base64 payload") from None


def _identify(data: bytes) -> tuple[str, int, int]:
    """The format and dimensions of ``data``; raises ``NotAnImage`` for anything else."""
    if data.startswith(_PNG_SIGNATURE):
        return ("png", *_png_size(data))
    if data.startswith(b"\xff\xd8"):
        return ("jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp", *_webp_size(data))
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack_from("<HH", data, 6)
        return "gif", width, height
    raise NotAnImage


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first."""
    length, chunk_type, width, height = struct.unpack_from(">I4sII", data, 8)
    if chunk_type != b"IHDR" or length < 8:
        raise NotAnImage
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments after SOI up to the first start-of-frame and read its size."""
    pos = 2
    while True:
        if data[pos] != 0xFF:
            raise NotAnImage
        while data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD9, 0xDA):  # stuffing, EOI or SOS before any frame header
            raise NotAnImage
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise NotAnImage
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return width, height
        pos += length


def _webp_size(data: bytes) -> tuple[int, int]:
    """Canvas size from the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[20] & 1 or data[23:26] != _VP8_START_CODE:  # must be a key frame
            raise NotAnImage
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise NotAnImage
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        if len(data) < 30:
            raise NotAnImage
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise NotAnImage


def _subject(param: str | None) -> str:
    return f"the image in {param}" if param else "the image"


def _invalid(param: str | None) -> InvalidRequest:
    return InvalidRequest(
        f"{_subject(param)} is not a PNG, JPEG, WebP or GIF image",
        param=param,
        code="invalid_image",
    )


def _bad_data_url(param: str | None, problem: str) -> InvalidRequest:
    subject = f"the data URL in {param}" if param else "the data URL"
    return InvalidRequest(f"{subject} {problem}", param=param, code="invalid_image")

"""Images are recognised by content: real headers built here, truncations, limits, data URLs."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from pngkit import png
from trae2api.errors import InvalidRequest, PayloadTooLarge
from trae2api.wire.images import ImageData, decode_data_url, inspect_image

LIMIT = 1 << 20


def segment(marker: int, body: bytes) -> bytes:
    """A JPEG marker segment: FF, marker, big-endian length (counting itself), body."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg(width: int, height: int, *, sof: int = 0xC0, before_sof: bytes = b"") -> bytes:
    """A baseline JPEG header sequence: SOI, APP0, DQT, [extra], SOFn, DHT, SOS, data, EOI."""
    app0 = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = segment(0xDB, b"\x00" + bytes(range(1, 65)))
    frame = segment(sof, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    dht = segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    sos = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + app0 + dqt + before_sof + frame + dht + sos + b"\x12\x34" + b"\xff\xd9"


def riff(chunk: bytes, payload: bytes) -> bytes:
    """A RIFF/WEBP container holding one chunk."""
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def vp8l(width: int, height: int) -> bytes:
    """A lossless WebP header: signature 0x2F, then 14-bit width-1 and height-1."""
    bits = (width - 1) | (height - 1) << 14
    return riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8)


def vp8x(width: int, height: int) -> bytes:
    """An extended WebP header: flags, reserved bytes, 24-bit canvas width-1 and height-1."""
    dims = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff(b"VP8X", b"\x10\x00\x00\x00" + dims)


def vp8(width: int, height: int, *, key_frame: bool = True) -> bytes:
    """A lossy WebP header: 3-byte frame tag, start code, 14-bit width and height."""
    tag = b"\x50\x01\x00" if key_frame else b"\x51\x01\x00"
    body = tag + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 10
    return riff(b"VP8 ", body)


def gif(width: int, height: int, version: bytes = b"89a") -> bytes:
    """A GIF header with its logical screen descriptor and a trailer."""
    return b"GIF" + version + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"\x3b"


VALID = [
    ("png", png(3, 2), "png", 3, 2),
    ("png wide", png(300, 1), "png", 300, 1),
    ("jpeg baseline", jpeg(640, 480), "jpeg", 640, 480),
    ("jpeg progressive", jpeg(17, 9, sof=0xC2), "jpeg", 17, 9),
    ("jpeg lossless sof15", jpeg(5, 6, sof=0xCF), "jpeg", 5, 6),
    ("jpeg dht before sof", jpeg(8, 8, before_sof=segment(0xC4, b"\x00" * 17)), "jpeg", 8, 8),
    ("jpeg jpg marker skipped", jpeg(8, 9, before_sof=segment(0xC8, b"\x00")), "jpeg", 8, 9),
    ("jpeg dac marker skipped", jpeg(9, 8, before_sof=segment(0xCC, b"\x00\x00")), "jpeg", 9, 8),
    ("jpeg fill bytes", jpeg(4, 3, before_sof=b"\xff\xff"), "jpeg", 4, 3),
    ("jpeg standalone tem", jpeg(4, 5, before_sof=b"\xff\x01"), "jpeg", 4, 5),
    ("webp lossless", vp8l(1, 16383), "webp", 1, 16383),
    ("webp lossless square", vp8l(400, 300), "webp", 400, 300),
    ("webp extended", vp8x(70000, 2), "webp", 70000, 2),
    ("webp lossy", vp8(320, 240), "webp", 320, 240),
    ("webp lossy scale bits ignored", vp8(320 | 0x4000, 240 | 0x8000), "webp", 320, 240),
    ("gif89a", gif(10, 20), "gif", 10, 20),
    ("gif87a", gif(65535, 1, b"87a"), "gif", 65535, 1),
]


@pytest.mark.parametrize(("data", "fmt", "width", "height"), [v[1:] for v in VALID])
def test_formats_and_dimensions_come_from_the_content(
    data: bytes, fmt: str, width: int, height: int
) -> None:
    """Each real header yields its format, its dimensions and the digest of the bytes."""
    image = inspect_image(data, max_bytes=LIMIT)
    assert (image.format, image.width, image.height) == (fmt, width, height)
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.data == data


INVALID = [
    ("empty", b""),
    ("text", b"hello, this is not an image at all"),
    ("svg", b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"),
    ("bmp", b"BM" + b"\x00" * 60),
    ("png signature only", png(3, 2)[:8]),
    ("png truncated ihdr", png(3, 2)[:20]),
    ("png zero width", png(0, 2)),
    ("png first chunk not ihdr", png(3, 2)[:12] + b"IDAT" + png(3, 2)[16:]),
    ("jpeg soi only", b"\xff\xd8"),
    ("jpeg truncated before sof", jpeg(8, 8)[:40]),
    ("jpeg truncated inside sof", jpeg(8, 8)[:94]),
    ("jpeg sos before sof", b"\xff\xd8" + segment(0xDA, b"\x00" * 6) + b"\xff\xd9"),
    ("jpeg eoi before sof", b"\xff\xd8\xff\xd9"),
    ("jpeg garbage between segments", b"\xff\xd8\x00\x00" + jpeg(8, 8)[2:]),
    ("jpeg zero height", jpeg(8, 0)),
    ("jpeg bad length", b"\xff\xd8\xff\xe0\x00\x01" + jpeg(8, 8)[2:]),
    ("riff not webp", b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 16),
    ("webp unknown chunk", riff(b"ALPH", b"\x00" * 10)),
    ("webp lossy not key frame", vp8(10, 10, key_frame=False)),
    ("webp lossy zero width", vp8(0, 10)),
    ("webp lossy bad start code", vp8(10, 10).replace(b"\x9d\x01\x2a", b"\x00\x00\x00")),
    ("webp lossless bad signature", vp8l(10, 10).replace(b"\x2f", b"\x00", 1)),
    ("webp lossless truncated", vp8l(10, 10)[:23]),
    ("webp extended truncated", vp8x(10, 10)[:28]),
    ("gif truncated", gif(10, 20)[:8]),
    ("gif zero height", gif(10, 0)),
    ("gif unknown version", b"GIF90a" + gif(10, 20)[6:]),
]


@pytest.mark.parametrize("data", [v[1] for v in INVALID], ids=[v[0] for v in INVALID])
def test_anything_else_is_an_invalid_image(data: bytes) -> None:
    """Garbage, truncated headers and zero dimensions are a 400 invalid_image naming the param."""
    with pytest.raises(InvalidRequest) as caught:
        inspect_image(data, max_bytes=LIMIT, param="messages[0].content[1]")
    assert caught.value.code == "invalid_image"
    assert caught.value.param == "messages[0].content[1]"
    assert caught.value.message.endswith("is not a PNG, JPEG, WebP or GIF image")


@pytest.mark.parametrize(("extra", "ok"), [(0, True), (-1, False)])
def test_size_limit_is_inclusive(extra: int, ok: bool) -> None:
    """An image exactly at the limit passes; one byte over is a 413 naming MAX_IMAGE_BYTES."""
    data = png(20, 20)
    if ok:
        assert inspect_image(data, max_bytes=len(data) + extra).width == 20
        return
    with pytest.raises(PayloadTooLarge) as caught:
        inspect_image(data, max_bytes=len(data) + extra, param="p")
    assert caught.value.status == 413
    assert str(len(data) - 1) in caught.value.message
    assert "MAX_IMAGE_BYTES" in caught.value.message


@pytest.mark.parametrize(
    ("fmt", "mime", "extension"),
    [
        ("png", "image/png", ".png"),
        ("jpeg", "image/jpeg", ".jpg"),
        ("webp", "image/webp", ".webp"),
        ("gif", "image/gif", ".gif"),
    ],
)
def test_image_data_describes_itself(fmt: str, mime: str, extension: str) -> None:
    """mime, extension and data_url follow the format, and repr leaves the bytes out."""
    image = ImageData(data=b"\x01\x02\x03", format=fmt, width=1, height=1, sha256="00")
    assert (image.mime, image.extension) == (mime, extension)
    assert image.data_url() == f"data:{mime};base64,AQID"
    assert "data=" not in repr(image)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


GOOD_URLS = [
    ("declared png", f"data:image/png;base64,{b64(png(4, 4))}", "png"),
    ("declared mime is ignored", f"data:image/jpeg;base64,{b64(png(4, 4))}", "png"),
    ("no mime", f"data:;base64,{b64(gif(4, 4))}", "gif"),
    ("octet stream", f"data:application/octet-stream;base64,{b64(vp8l(4, 4))}", "webp"),
    ("upper case", f"DATA:IMAGE/PNG;BASE64,{b64(png(4, 4))}", "png"),
    ("extra parameter", f"data:image/jpeg;name=a.jpg;base64,{b64(jpeg(4, 4))}", "jpeg"),
    ("line breaks", "data:image/png;base64," + "\n".join(b64(png(9, 9))), "png"),
    ("no padding", f"data:image/gif;base64,{b64(gif(4, 4)).rstrip('=')}", "gif"),
    (
        "url-safe alphabet",
        "data:image/png;base64," + base64.urlsafe_b64encode(png(50, 3)).decode(),
        "png",
    ),
    ("percent-encoded", f"data:image/png;base64,{b64(png(4, 4)).replace('+', '%2B')}", "png"),
]


@pytest.mark.parametrize(("url", "fmt"), [v[1:] for v in GOOD_URLS], ids=[v[0] for v in GOOD_URLS])
def test_base64_data_urls_decode_to_their_content(url: str, fmt: str) -> None:
    """A base64 data URL decodes, and the content, not the declared type, decides the format."""
    assert decode_data_url(url, max_bytes=LIMIT).format == fmt


BAD_URLS = [
    ("not base64", f"data:image/png,{png(2, 2).decode('latin-1')}", "base64"),
    ("not a data url", "https://example.invalid/x.png", "not a data: URL"),
    ("no comma", "data:image/png;base64", "not a data: URL"),
    ("bad base64", "data:image/png;base64,iVBORw0KGgo*&^%!!!", "invalid base64"),
    ("impossible length", "data:image/png;base64,QUJDR", "invalid base64"),
    ("declared text", f"data:text/plain;base64,{b64(png(2, 2))}", "text/plain"),
    ("declared html", f"data:text/html;base64,{b64(png(2, 2))}", "text/html"),
    ("base64 not an image", f"data:image/png;base64,{b64(b'just text')}", "not a PNG"),
    ("empty payload", "data:image/png;base64,", "not a PNG"),
]


@pytest.mark.parametrize(("url", "words"), [v[1:] for v in BAD_URLS], ids=[v[0] for v in BAD_URLS])
def test_bad_data_urls_are_400s(url: str, words: str) -> None:
    """Non-base64, malformed, non-image or mis-declared data URLs are a 400 invalid_image."""
    with pytest.raises(InvalidRequest) as caught:
        decode_data_url(url, max_bytes=LIMIT, param="image_url")
    assert caught.value.code == "invalid_image"
    assert caught.value.param == "image_url"
    assert words in caught.value.message


@pytest.mark.parametrize(
    "payload",
    [b64(gif(4, 4) + bytes(200)), "A" * 4000 + "!!!!"],
    ids=["valid image over the limit", "invalid base64 over the limit"],
)
def test_too_large_data_urls_are_413s_before_decoding(payload: str) -> None:
    """The decoded size is estimated from the base64 length, so even bad base64 gets a 413."""
    with pytest.raises(PayloadTooLarge) as caught:
        decode_data_url(f"data:image/png;base64,{payload}", max_bytes=100, param="image_url")
    assert caught.value.status == 413
    assert "100 bytes" in caught.value.message

"""What a chat saw of its images, checked strictly and described for the reply (protocol §8).

Legacy dialect: ``multi_media`` items of exactly ``{"type": "image", "uri", "width", "height",
"format"}`` (the CHOICE of §8), each ``uri`` an ImageUri this account committed, and width,
height and format those ImageX reported for it; anything else is ``Invalid("multi_media[i]...")``
(HTTP 400). Agent dialect: ``image_url`` parts holding ``data:image/<type>;base64,...`` (decoded
and read) or ``http(s)://`` URLs (described as ``remote <url>``); anything else, or images for a
model whose catalogue entry is not multimodal, is ``AgentRejected(4001)``.

The reply note is `` [saw N image(s): <w>x<h> <format> sha256:<12 hex>; ...]``. Pure but for
reading the committed images through ``ImageStore``; no HTTP here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from trae2api.testing.agent_validation import AgentRejected
from trae2api.testing.image_info import describe, image_info, seen_note
from trae2api.testing.image_store import CommittedImage, ImageStore
from trae2api.testing.validation import Invalid

ITEM_KEYS = frozenset({"type", "uri", "width", "height", "format"})
NO_IMAGES = "model does not accept images"
_MIME_TYPES = {
    "png": ("image/png",),
    "jpeg": ("image/jpeg", "image/jpg"),
    "gif": ("image/gif",),
    "webp": ("image/webp",),
}


# -- legacy multi_media ------------------------------------------------------------------------


def check_multi_media(items: Sequence[Any], store: ImageStore, owner: str) -> str:
    """The reply note for valid ``multi_media`` items ("" for none), else ``Invalid``."""
    descriptions: list[str] = []
    for index, item in enumerate(items):
        image = _check_item(f"multi_media[{index}]", item, store, owner)
        descriptions.append(describe(image.info, image.data))
    return seen_note(descriptions)


def _check_item(prefix: str, item: Any, store: ImageStore, owner: str) -> CommittedImage:
    if not isinstance(item, dict):
        raise Invalid(prefix, "must be an object")
    if set(item) != ITEM_KEYS:
        wrong = sorted(set(item) ^ ITEM_KEYS)[0]
        raise Invalid(f"{prefix}.{wrong}", "items have exactly type, uri, width, height, format")
    if item["type"] != "image":
        raise Invalid(f"{prefix}.type", 'must be "image"')
    uri = item["uri"]
    image = store.image(uri) if isinstance(uri, str) else None
    if image is None or image.owner != owner:
        raise Invalid(f"{prefix}.uri", "must be an ImageUri this account committed")
    wanted: dict[str, Any] = {
        "width": image.info.width,
        "height": image.info.height,
        "format": image.info.format,
    }
    for key, value in wanted.items():
        if type(item[key]) is not type(value) or item[key] != value:
            shown = orjson.dumps(value).decode()
            raise Invalid(f"{prefix}.{key}", f"must be {shown}, as ImageX committed it")
    return image


def accepts_images(models: Sequence[Mapping[str, Any]], name: str) -> bool:
    """Whether the legacy catalogue entry ``name`` says ``multimodal: true``."""
    return any(m.get("name") == name and m.get("multimodal") is True for m in models)


# -- agent image_url parts ---------------------------------------------------------------------


def _image_urls(messages: Sequence[Any]) -> list[tuple[int, int, str]]:
    """``(message index, part index, url)`` of every ``image_url`` part."""
    found: list[tuple[int, int, str]] = []
    for index, message in enumerate(messages):
        for number, part in enumerate(message.get("content") or []):
            if part.get("type") == "image_url":
                found.append((index, number, str(part["image_url"]["url"])))
    return found


def agent_image_note(body: Any, *, multimodal: bool) -> str:
    """The reply note for the images of the last ``user`` message of a body that
    ``check_agent_chat`` accepted; ``AgentRejected(4001)`` for images anywhere when the model
    is not ``multimodal``, or for an image URL that is neither a readable data URL nor http(s)."""
    messages = body["messages"]
    found = _image_urls(messages)
    if found and not multimodal:
        raise AgentRejected(4001, NO_IMAGES)
    users = [index for index, message in enumerate(messages) if message.get("role") == "user"]
    last_user = users[-1] if users else -1
    return seen_note(
        [
            describe_url(f"messages[{index}].content[{number}].image_url.url", url)
            for index, number, url in found
            if index == last_user
        ]
    )


def describe_url(where: str, url: str) -> str:
    """``remote <url>`` for http(s), else the description of a ``data:`` URL's image."""
    if url.startswith(("http://", "https://")):
        return f"remote {url}"
    if not url.startswith("data:"):
        raise AgentRejected(4001, f"{where} must be a data: URL or an http(s) URL")
    header, comma, payload = url[len("data:") :].partition(",")
    mime, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not mime.startswith("image/"):
        raise AgentRejected(4001, f"{where} must be data:image/<type>;base64,<data>")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise AgentRejected(4001, f"{where} holds invalid base64") from exc
    try:
        info = image_info(data)
    except ValueError as exc:
        raise AgentRejected(4001, f"{where} is not a readable image: {exc}") from exc
    if mime.lower() not in _MIME_TYPES[info.format]:
        raise AgentRejected(4001, f"{where} says {mime} but holds {info.format}")
    return describe(info, data)

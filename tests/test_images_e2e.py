"""Images end to end with the openai SDK: data URLs and https URLs, both dialects."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest
import trustme

from conftest import Gateway
from pngkit import png as _png
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A PNG of noise, so size limits are about real bytes."""
    return _png(width, height, seed, noise=True)


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def seen(image: bytes, width: int, height: int) -> str:
    """How the simulated upstream describes an image it received."""
    return f"{width}x{height} png sha256:{hashlib.sha256(image).hexdigest()[:12]}"


def ask(text: str, *urls: str) -> list[Any]:
    parts: list[Any] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]


class _Images(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def tls() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def image_server(tls: trustme.CA) -> Iterator[str]:
    """An https server on 127.0.0.1 serving PNGs under /a.png and /b.png."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Images.files = {"/a.png": png(5, 4, 1), "/b.png": png(2, 9, 2)}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ca_file(tls: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls.cert_pem.write_to_path(str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("dialect", "model"), [("legacy", "claude-3-5-sonnet"), ("agent", "claude-sonnet-4.5")]
)
def test_data_url_image_arrives(start_gateway: Any, dialect: str, model: str, stream: bool) -> None:
    """A PNG sent as a data URL reaches Trae intact, streamed or not, on both dialects."""
    image = png(3, 2)
    client = start_gateway(upstream_dialect=dialect).client()
    reply = client.chat.completions.create(
        model=model, messages=ask("what is this?", data_url(image)), stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices)  # type: ignore[union-attr]
    else:
        text = reply.choices[0].message.content or ""  # type: ignore[union-attr]
    assert seen(image, 3, 2) in text


@pytest.mark.slow
def test_https_url_and_several_images(
    start_gateway: Any, image_server: str, ca_file: Path, sim: SimulatedTrae
) -> None:
    """Remote https images and a data URL in one message all arrive, in order."""
    client = start_gateway(allow_private_image_urls=True, image_fetch_ca_bundle=ca_file).client()
    inline = png(6, 6, 3)
    reply = client.chat.completions.create(
        model="claude-3-5-sonnet",
        messages=ask("three", f"{image_server}/a.png", data_url(inline), f"{image_server}/b.png"),
    )
    text = reply.choices[0].message.content or ""
    expected = [
        seen(_Images.files["/a.png"], 5, 4),
        seen(inline, 6, 6),
        seen(_Images.files["/b.png"], 2, 9),
    ]
    assert "saw 3 image(s)" in text
    positions = [text.index(item) for item in expected]
    assert positions == sorted(positions)


@pytest.mark.slow
def test_image_in_an_earlier_turn_is_uploaded_once(start_gateway: Any, sim: SimulatedTrae) -> None:
    """An image from an earlier turn still reaches Trae, and is not uploaded again."""
    client = start_gateway().client()
    image = png(4, 4, 9)
    first = ask("look", data_url(image))
    reply = client.chat.completions.create(model="claude-3-5-sonnet", messages=first)
    uploads = sim.control.stats()["tos_uploads"]
    history = [*first, {"role": "assistant", "content": reply.choices[0].message.content}]
    again = client.chat.completions.create(
        model="claude-3-5-sonnet", messages=[*history, {"role": "user", "content": "and now?"}]
    )
    assert seen(image, 4, 4) in (again.choices[0].message.content or "")
    assert sim.control.stats()["tos_uploads"] == uploads == 1


@pytest.mark.slow
def test_non_multimodal_model_is_refused_before_upload(
    start_gateway: Any, sim: SimulatedTrae
) -> None:
    """A model without image support is a 400 naming it, and nothing is uploaded."""
    client = start_gateway().client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="deepseek-chat", messages=ask("x", data_url(png(2, 2)))
        )
    assert "deepseek-chat" in caught.value.message
    assert caught.value.code == "model_not_multimodal"  # type: ignore[attr-defined]
    assert sim.control.stats()["upload_tokens_issued"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (
            "data:image/png;base64," + base64.b64encode(b"not an image at all").decode(),
            400,
            "invalid_image",
        ),
        ("data:image/png;base64," + base64.b64encode(png(64, 64)).decode(), 413, None),
        ("http://127.0.0.1:9/x.png", 400, "image_url_not_allowed"),
        ("http://10.1.2.3/x.png", 400, "image_url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", 400, "image_url_not_allowed"),
    ],
)
def test_bad_images_are_clear_4xx(
    start_gateway: Any, sim: SimulatedTrae, url: str, status: int, code: str | None
) -> None:
    """Non-images, oversize images and private addresses are refused with the envelope."""
    gateway = start_gateway(max_image_bytes=4096)
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions", json={"model": "claude-3-5-sonnet", "messages": ask("x", url)}
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] is not None
    if code:
        assert error["code"] == code
    assert sim.control.stats()["upload_tokens_issued"] == 0


@pytest.mark.slow
def test_agent_passes_remote_urls_when_told(
    start_gateway: Any, image_server: str, ca_file: Path, sim: SimulatedTrae
) -> None:
    """With INLINE_REMOTE_IMAGES=false the agent dialect passes the URL on instead of bytes."""
    client = start_gateway(upstream_dialect="agent", inline_remote_images=False).client()
    url = f"{image_server}/a.png"
    client.chat.completions.create(model="claude-sonnet-4.5", messages=ask("x", url))
    parts = sim.control.last_chat()["body"]["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in parts


@pytest.mark.slow
def test_agent_inlines_remote_images(
    start_gateway: Any, image_server: str, ca_file: Path, sim: SimulatedTrae
) -> None:
    """By default the agent dialect fetches remote images and sends them as data URLs."""
    gateway: Gateway = start_gateway(
        upstream_dialect="agent", allow_private_image_urls=True, image_fetch_ca_bundle=ca_file
    )
    reply = gateway.client().chat.completions.create(
        model="claude-sonnet-4.5", messages=ask("x", f"{image_server}/b.png")
    )
    assert seen(_Images.files["/b.png"], 2, 9) in (reply.choices[0].message.content or "")
    parts = sim.control.last_chat()["body"]["messages"][0]["content"]
    assert re.match(r"data:image/png;base64,", parts[1]["image_url"]["url"])


@pytest.mark.slow
def test_unreachable_image_host_is_a_clear_400(start_gateway: Any) -> None:
    """An image URL nobody answers is a 400 image_fetch_failed, not a gateway error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = start_gateway(allow_private_image_urls=True)
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions",
            json={
                "model": "claude-3-5-sonnet",
                "messages": ask("x", f"http://127.0.0.1:{port}/a.png"),
            },
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "image_fetch_failed"

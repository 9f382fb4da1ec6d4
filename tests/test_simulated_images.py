"""The simulated upstream runs the §8 image pipeline strictly: token, SigV4 ImageX, TOS, chat."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

import simkit
from pngkit import png as make_png
from simkit import (
    AGENT_CHAT,
    CHAT,
    Body,
    agent_headers,
    answer,
    chat_body,
    ide_headers,
    parse_sse,
    text,
)
from trae2api.testing import SimulatedTrae
from trae2api.testing.image_info import image_info
from trae2api.testing.sigv4_verify import canonical_request, compute_signature

TOKEN_PATH = "/api/ide/v1/get_upload_token"
REGION = "ap-singapore-1"
SERVICE = "imagex"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()


@pytest.fixture
def cred(sim: SimulatedTrae, client: httpx.Client, token: str) -> Body:
    response = client.get(TOKEN_PATH, headers=ide_headers(sim, token))
    assert response.status_code == 200
    data: Body = response.json()["data"]
    return data


# -- an independent SigV4 signer (never shares code with the sim's verifier or the gateway) ----


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign(
    method: str, url: httpx.URL, body: bytes, cred: Body, *, region: str = REGION, **kw: Any
) -> dict[str, str]:
    """The X-Amz-* and Authorization headers of a request; ``kw`` may override service,
    secret, session token, access key and time."""
    when: datetime = kw.get("when") or datetime.now(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    session = kw.get("token", cred["session_token"])
    headers = {"host": url.netloc.decode(), "x-amz-date": amz_date, "x-amz-security-token": session}
    encode = lambda s: quote(s, safe="-_.~")  # noqa: E731
    query = "&".join(sorted(f"{encode(k)}={encode(v)}" for k, v in url.params.multi_items()))
    names = ";".join(sorted(headers))
    lines = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers))
    digest = hashlib.sha256(body).hexdigest()
    canonical = "\n".join([method, "/", query, lines, names, digest])
    scope = f"{amz_date[:8]}/{region}/{kw.get('service', SERVICE)}/aws4_request"
    hashed = hashlib.sha256(canonical.encode()).hexdigest()
    key = ("AWS4" + kw.get("secret", cred["secret_access_key"])).encode()
    for part in scope.split("/"):
        key = _hmac(key, part)
    signature = hmac.new(key, f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashed}".encode(), "sha256")
    access_key = kw.get("access_key", cred["access_key_id"])
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, "
        f"Signature={signature.hexdigest()}"
    )
    return {"X-Amz-Date": amz_date, "X-Amz-Security-Token": session, "Authorization": authorization}


def imagex(
    client: httpx.Client, cred: Body, params: dict[str, str], body: bytes = b"", **kw: Any
) -> httpx.Response:
    """A signed ImageX call: GET without a body, POST (JSON) with one."""
    query = {"Version": "2018-08-01", "ServiceId": cred["service_id"], **params}
    url = httpx.URL(str(client.base_url) + "/", params=query)
    method = "POST" if body else "GET"
    headers = sign(method, url, body, cred, **kw)
    if body:
        headers["Content-Type"] = "application/json"
    return client.request(method, url, headers=headers, content=body)


def apply(client: httpx.Client, cred: Body, size: int, **kw: Any) -> httpx.Response:
    params = {"Action": "ApplyImageUpload", "FileSize": str(size), "FileExtension": ".png"}
    return imagex(client, cred, params, **kw)


def commit(client: httpx.Client, cred: Body, session_key: str) -> httpx.Response:
    body = orjson.dumps({"SessionKey": session_key})
    return imagex(client, cred, {"Action": "CommitImageUpload"}, body)


def tos(client: httpx.Client, address: Body, data: bytes, **headers: str) -> httpx.Response:
    store = address["StoreInfos"][0]
    sent = {
        "Authorization": store["Auth"],
        "Content-CRC32": f"{zlib.crc32(data):08x}",
        "Content-Type": "application/octet-stream",
        **headers,
    }
    return client.post(f"/upload/v1/{store['StoreUri']}", headers=sent, content=data)


def applied(client: httpx.Client, cred: Body, data: bytes) -> Body:
    response = apply(client, cred, len(data))
    assert response.status_code == 200, response.text
    address: Body = response.json()["Result"]["UploadAddress"]
    return address


def upload(client: httpx.Client, cred: Body, data: bytes) -> Body:
    """The whole pipeline; returns the commit's PluginResult item."""
    address = applied(client, cred, data)
    assert tos(client, address, data).json()["code"] == 2000
    response = commit(client, cred, address["SessionKey"])
    assert response.status_code == 200, response.text
    plugin: Body = response.json()["Result"]["PluginResult"][0]
    return plugin


def item(plugin: Body) -> Body:
    """The §8 CHOICE ``multi_media`` item for a committed image."""
    return {
        "type": "image",
        "uri": plugin["ImageUri"],
        "width": plugin["ImageWidth"],
        "height": plugin["ImageHeight"],
        "format": plugin["ImageFormat"],
    }


def legacy_chat(
    client: httpx.Client, sim: SimulatedTrae, token: str, media: list[Any], model: str = "gpt-4o"
) -> httpx.Response:
    body = chat_body([("user", "look")], model)
    body["multi_media"] = media
    return client.post(CHAT, headers=ide_headers(sim, token), json=body)


def error_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["ResponseMetadata"]["Error"]["Code"]


def sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


# -- tests --------------------------------------------------------------------------------------


def test_verifier_matches_the_aws_get_vanilla_vector() -> None:
    """The verifier's canonicalisation reproduces AWS's get-vanilla signature exactly."""
    headers = [("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")]
    canonical = canonical_request("GET", "/", "", headers, ["host", "x-amz-date"], EMPTY_SHA256)
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    signature = compute_signature(secret, "20150830T123600Z", "us-east-1", "service", canonical)
    assert signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


def test_upload_token_needs_ide_headers_and_is_short_lived(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """get_upload_token answers random credentials for a valid token and 401/1001 otherwise."""
    assert set(cred) == {
        "access_key_id", "secret_access_key", "session_token", "service_id", "expired_time"
    }  # fmt: skip
    assert 3500 < cred["expired_time"] - datetime.now(UTC).timestamp() <= 3600
    bad = client.get(TOKEN_PATH, headers=ide_headers(sim, "nope"))
    assert (bad.status_code, bad.json()["code"]) == (401, 1001)
    again = client.get(TOKEN_PATH, headers=ide_headers(sim, token)).json()["data"]
    assert again["access_key_id"] != cred["access_key_id"]
    assert sim.control.stats()["upload_tokens_issued"] == 2


def test_upload_token_path_is_configurable(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """The upload-token endpoint moves with upload_token_path; the old path becomes a 404."""
    sim.control.configure(upload_token_path="/api/ide/v2/upload_token")
    assert client.get("/api/ide/v2/upload_token", headers=ide_headers(sim, token)).is_success
    assert client.get(TOKEN_PATH, headers=ide_headers(sim, token)).status_code == 404


def test_full_pipeline_reaches_the_legacy_chat(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """Token, apply, TOS, commit and a multi_media chat carry the exact image through."""
    png = make_png(3, 2)
    address = applied(client, cred, png)
    assert address["UploadHosts"] == ["tos-sg16-share.vodupload.com"]
    assert address["StoreInfos"][0]["StoreUri"].startswith("tos-sg16-i-")
    uploaded = tos(client, address, png).json()
    assert uploaded == {
        "code": 2000,
        "message": "Success",
        "data": {"crc32": f"{zlib.crc32(png):08x}"},
    }
    result = commit(client, cred, address["SessionKey"]).json()["Result"]
    uri = address["StoreInfos"][0]["StoreUri"]
    assert result["Results"] == [{"Uri": uri, "UriStatus": 2000}]
    plugin = result["PluginResult"][0]
    assert plugin == {
        "ImageUri": uri, "ImageWidth": 3, "ImageHeight": 2,
        "ImageMd5": hashlib.md5(png).hexdigest(), "ImageFormat": "png",  # noqa: S324
    }  # fmt: skip
    reply = answer(parse_sse(legacy_chat(client, sim, token, [item(plugin)]).text))
    assert reply == f"Hello! You said: look (turn 0) [saw 1 image(s): 3x2 png sha256:{sha12(png)}]"
    stats = sim.control.stats()
    assert [stats[k] for k in ("imagex_apply", "tos_uploads", "images_committed")] == [1, 1, 1]
    assert sim.control.images()[0]["sha256"] == hashlib.sha256(png).hexdigest()


def test_several_images_are_described_in_order(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """Two committed images appear in the reply in multi_media order, joined by "; "."""
    first, second = make_png(4, 4, 1), make_png(16, 9, 2)
    media = [item(upload(client, cred, first)), item(upload(client, cred, second))]
    reply = answer(parse_sse(legacy_chat(client, sim, token, media).text))
    seen = f"4x4 png sha256:{sha12(first)}; 16x9 png sha256:{sha12(second)}"
    assert reply.endswith(f" [saw 2 image(s): {seen}]")


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"secret": "wrong-secret"}, 403, "SignatureDoesNotMatch"),
        ({"service": "ImageX"}, 403, "SignatureDoesNotMatch"),
        ({"region": "us-east-1"}, 403, "SignatureDoesNotMatch"),
        ({"when": datetime.now(UTC) - timedelta(minutes=10)}, 403, "RequestTimeTooSkewed"),
        ({"token": "STS2forged"}, 403, "InvalidSecurityToken"),
        ({"access_key": "AKTPUNKNOWN"}, 403, "InvalidAccessKey"),
    ],
    ids=["secret", "service", "region", "stale-date", "security-token", "access-key"],
)
def test_imagex_rejects_bad_signing(
    sim: SimulatedTrae,
    client: httpx.Client,
    cred: Body,
    overrides: Body,
    status: int,
    code: str,
) -> None:
    """Each signing mistake is refused with its ImageX error code and counted."""
    assert error_code(apply(client, cred, 10, **overrides)) == (status, code)
    assert sim.control.stats()["signature_failures"] == 1


def test_imagex_rejects_tampering_and_missing_signature(client: httpx.Client, cred: Body) -> None:
    """A tampered signature, a body changed after signing and no Authorization all fail."""
    url = httpx.URL(str(client.base_url) + "/", params={"Action": "ApplyImageUpload"})
    headers = sign("GET", url, b"", cred)
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    assert error_code(client.get(url, headers=headers)) == (403, "SignatureDoesNotMatch")
    body = orjson.dumps({"SessionKey": "x"})
    url = httpx.URL(str(client.base_url) + "/", params={"Action": "CommitImageUpload"})
    signed = sign("POST", url, body, cred) | {"Content-Type": "application/json"}
    swapped = client.post(url, headers=signed, content=orjson.dumps({"SessionKey": "y"}))
    assert error_code(swapped) == (403, "SignatureDoesNotMatch")
    assert error_code(client.get(url)) == (403, "MissingAuthenticationToken")


def test_expired_credentials_answer_expired_token(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """Expired upload credentials answer 401 ExpiredToken; fresh ones work again."""
    sim.control.expire_upload_credentials()
    assert error_code(apply(client, cred, 10)) == (401, "ExpiredToken")
    sim.control.configure(upload_credentials_ttl=0)
    fresh = client.get(TOKEN_PATH, headers=ide_headers(sim, token)).json()["data"]
    assert error_code(apply(client, fresh, 10)) == (401, "ExpiredToken")
    sim.control.configure(upload_credentials_ttl=60)
    fresh = client.get(TOKEN_PATH, headers=ide_headers(sim, token)).json()["data"]
    assert apply(client, fresh, 10).status_code == 200


def test_service_region_and_parameters_are_checked(
    sim: SimulatedTrae, client: httpx.Client, cred: Body
) -> None:
    """Wrong ServiceId, missing FileSize, unknown Action and POST apply are refused."""
    wrong = imagex(client, cred, {"Action": "ApplyImageUpload", "ServiceId": "other"})
    assert error_code(wrong) == (400, "InvalidServiceId")
    missing = imagex(client, cred, {"Action": "ApplyImageUpload", "FileExtension": ".png"})
    assert error_code(missing) == (400, "InvalidParameter")
    assert error_code(imagex(client, cred, {"Action": "Nope"})) == (400, "InvalidAction")
    posted = imagex(client, cred, {"Action": "ApplyImageUpload"}, b"{}")
    assert error_code(posted) == (400, "InvalidParameter")
    sim.control.configure(imagex_service="ImageX", imagex_region="us-east-1")
    assert apply(client, cred, 10, service="ImageX", region="us-east-1").status_code == 200


def test_tos_checks_auth_type_size_and_crc(client: httpx.Client, cred: Body) -> None:
    """TOS refuses a wrong Auth, content type, size or CRC with its business codes."""
    png = make_png(2, 2)
    address = applied(client, cred, png)
    cases = [
        ({"Authorization": "SpaceKey/forged"}, png, 403, 4003),
        ({"Content-Type": "image/png"}, png, 400, 4000),
        ({"Content-CRC32": "DEADBEEF"}, png, 400, 4000),
        ({"Content-CRC32": "deadbeef"}, png, 400, 4002),
        ({}, png + b"x", 400, 4006),
    ]
    for headers, data, status, code in cases:
        response = tos(client, address, data, **headers)
        assert (response.status_code, response.json()["code"]) == (status, code), headers
    assert tos(client, address, png, **{"Content-CRC32": "deadbeef"}).json() == {
        "code": 4002, "message": "crc32 mismatch"
    }  # fmt: skip


def test_corrupt_next_upload_fails_once_then_succeeds(
    sim: SimulatedTrae, client: httpx.Client, cred: Body
) -> None:
    """corrupt_next_upload turns one correct upload into a CRC mismatch; a retry works."""
    png = make_png(2, 3)
    address = applied(client, cred, png)
    sim.control.configure(corrupt_next_upload=1)
    failed = tos(client, address, png)
    assert (failed.status_code, failed.json()["message"]) == (400, "crc32 mismatch")
    assert error_code(commit(client, cred, address["SessionKey"])) == (400, "FileNotUploaded")
    assert tos(client, address, png).json()["code"] == 2000
    assert commit(client, cred, address["SessionKey"]).status_code == 200


def test_commit_errors_and_fail_next_commit(
    sim: SimulatedTrae, client: httpx.Client, cred: Body
) -> None:
    """Unknown sessions, missing bytes, a forced failure and a second commit are refused."""
    png = make_png(5, 5)
    assert error_code(commit(client, cred, "unknown")) == (400, "InvalidSessionKey")
    address = applied(client, cred, png)
    assert error_code(commit(client, cred, address["SessionKey"])) == (400, "FileNotUploaded")
    tos(client, address, png)
    sim.control.configure(fail_next_commit=1)
    assert error_code(commit(client, cred, address["SessionKey"])) == (500, "InternalError")
    assert commit(client, cred, address["SessionKey"]).status_code == 200
    assert error_code(commit(client, cred, address["SessionKey"])) == (400, "InvalidSessionKey")
    stats = sim.control.stats()
    assert (stats["imagex_commit"], stats["images_committed"]) == (5, 1)


def test_multi_media_items_are_checked_strictly(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """Unknown uris, wrong dimensions or keys are HTTP 400 naming the multi_media item."""
    good = item(upload(client, cred, make_png(6, 7)))
    cases = [
        ({**good, "uri": "tos-sg16-i-x/never.png"}, "multi_media[0].uri"),
        ({**good, "width": 60}, "multi_media[0].width"),
        ({**good, "format": "PNG"}, "multi_media[0].format"),
        ({**good, "url": "x"}, "multi_media[0].url"),
        ({**good, "type": "image_url"}, "multi_media[0].type"),
    ]
    for bad, field in cases:
        response = legacy_chat(client, sim, token, [good, bad])
        assert response.status_code == 400
        assert response.json()["field"] == field.replace("[0]", "[1]")


def test_images_for_a_text_only_model_are_an_in_stream_4001(
    sim: SimulatedTrae, client: httpx.Client, token: str, cred: Body
) -> None:
    """multi_media for a model without multimodal: true streams error 4001."""
    media = [item(upload(client, cred, make_png(2, 2)))]
    response = legacy_chat(client, sim, token, media, model="deepseek-V3")
    assert response.status_code == 200
    error = {"code": 4001, "message": "model does not accept images"}
    assert parse_sse(response.text) == [("error", error)]


def _agent_turn(model: str, parts: list[Body]) -> Body:
    content = [*text("look"), *parts]
    messages = [{"role": "user", "content": content}]
    return {"function": "chat_v3", "config_name": model, "model": model, "stream": True} | {
        "messages": messages
    }


def _image_part(url: str) -> Body:
    return {"type": "image_url", "image_url": {"url": url}}


def test_agent_image_parts_are_described(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """Data URLs are decoded and described, remote URLs named, on a multimodal model."""
    png = make_png(8, 3)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    parts = [_image_part(data_url), _image_part("https://example.com/cat.png")]
    body = _agent_turn("claude-sonnet-4.5", parts)
    response = client.post(AGENT_CHAT, headers=agent_headers(sim, token), json=body)
    said = "".join(d["response"] for name, d in parse_sse(response.text) if name == "output")
    seen = f"8x3 png sha256:{sha12(png)}; remote https://example.com/cat.png"
    assert said == f"Hello! You said: look (turn 0) [saw 2 image(s): {seen}]"


@pytest.mark.parametrize(
    ("model", "url", "message"),
    [
        ("kimi-k2", "https://example.com/a.png", "model does not accept images"),
        ("claude-sonnet-4.5", "data:image/png;base64,AAAA", "not a readable image"),
        ("claude-sonnet-4.5", "data:image/jpeg;base64,{png}", "says image/jpeg but holds png"),
        ("claude-sonnet-4.5", "ftp://example.com/a.png", "data: URL or an http(s) URL"),
    ],
    ids=["text-only-model", "garbage", "wrong-media-type", "scheme"],
)
def test_agent_image_problems_are_in_stream_4001(
    sim: SimulatedTrae, client: httpx.Client, token: str, model: str, url: str, message: str
) -> None:
    """Images for a text-only model or unreadable image URLs stream error 4001."""
    url = url.replace("{png}", base64.b64encode(make_png(1, 1)).decode())
    body = _agent_turn(model, [_image_part(url)])
    events = parse_sse(client.post(AGENT_CHAT, headers=agent_headers(sim, token), json=body).text)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["code"] == 4001
    assert message in events[0][1]["message"]


def test_image_headers_of_other_formats_are_read() -> None:
    """GIF, baseline JPEG and the three WebP variants report their dimensions."""
    gif = b"GIF89a" + struct.pack("<HH", 300, 200)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08" + struct.pack(">HH", 480, 640)
    riff = lambda kind, rest: b"RIFF" + b"\0" * 4 + b"WEBP" + kind + b"\0" * 4 + rest  # noqa: E731
    lossy = riff(b"VP8 ", b"\0" * 3 + b"\x9d\x01\x2a" + struct.pack("<HH", 40, 30))
    lossless = riff(b"VP8L", b"\x2f" + ((40 - 1) | (30 - 1) << 14).to_bytes(4, "little") + b"\0")
    extended = riff(b"VP8X", b"\0" * 4 + (39).to_bytes(3, "little") + (29).to_bytes(3, "little"))
    found = [image_info(data) for data in (gif, jpeg, lossy, lossless, extended)]
    assert [(i.width, i.height, i.format) for i in found] == [
        (300, 200, "gif"), (640, 480, "jpeg"), *[(40, 30, "webp")] * 3
    ]  # fmt: skip

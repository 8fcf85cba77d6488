"""Credentials in source URLs: redacted for display, stripped for recording, never leaked."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cas.redact import has_credentials, redact_url, strip_credentials

# (url, redacted, stripped)
CASES = [
    ("https://user:pw@h.example/x", "https://***@h.example/x", "https://h.example/x"),
    ("https://ghp_token@github.com/o/r", "https://***@github.com/o/r", "https://github.com/o/r"),
    ("sftp://u:p@host:22/m.bin", "sftp://***@host:22/m.bin", "sftp://host:22/m.bin"),
    ("https://u:p@ss@h/x", "https://***@h/x", "https://h/x"),  # unencoded @ in the password
    ("https://u:a::b@h/x", "https://***@h/x", "https://h/x"),  # :: in the password, not a chain
    (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F"
        "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=abc123&versionId=7",
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=***&X-Amz-Credential=***&X-Amz-Date=***"
        "&X-Amz-Expires=***&X-Amz-SignedHeaders=***&X-Amz-Signature=***&versionId=7",
        "https://b.s3.amazonaws.com/k?versionId=7",
    ),
    (
        "https://h/k?X-Amz-Security-Token=tok",
        "https://h/k?X-Amz-Security-Token=***",
        "https://h/k",
    ),
    (
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=G&X-Goog-Credential=c"
        "&X-Goog-Signature=s",
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=***&X-Goog-Credential=***"
        "&X-Goog-Signature=***",
        "https://storage.googleapis.com/b/o",
    ),
    (
        "https://acct.blob.core.windows.net/c/m.onnx?sv=2024-01-01&se=2025&sp=r&sr=b&sig=a%2Bb%3D",
        "https://acct.blob.core.windows.net/c/m.onnx?sv=***&se=***&sp=***&sr=***&sig=***",
        "https://acct.blob.core.windows.net/c/m.onnx",
    ),
    (
        "https://h/x?Signature=s&Expires=1&AWSAccessKeyId=k",
        "https://h/x?Signature=***&Expires=***&AWSAccessKeyId=***",
        "https://h/x",
    ),
    ("https://h/x?token=t#frag", "https://h/x?token=***#frag", "https://h/x#frag"),
    (
        "https://h/x?a=1&access_token=t&b=2",
        "https://h/x?a=1&access_token=***&b=2",
        "https://h/x?a=1&b=2",
    ),
    ("https://h/x?KEY=k", "https://h/x?KEY=***", "https://h/x"),  # keys match in any case
    ("https://h/x?api%5Fkey=k", "https://h/x?api%5Fkey=***", "https://h/x"),  # percent-encoded key
    ("hf://org/repo@main/x?token=t", "hf://org/repo@main/x?token=***", "hf://org/repo@main/x"),
    ("hf://u:p@org/repo/x", "hf://***@org/repo/x", "hf://org/repo/x"),
    (
        "simplecache::s3://b/k?X-Amz-Credential=c&X-Amz-Signature=s",
        "simplecache::s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***",
        "simplecache::s3://b/k",
    ),
    (
        "blockcache::https://u:p@h/x?sig=s::x",  # no protocol after the last `::`: one link
        "blockcache::https://***@h/x?sig=***",
        "blockcache::https://h/x",
    ),
    ("http://[::1]:8080/m?token=t", "http://[::1]:8080/m?token=***", "http://[::1]:8080/m"),
]

CLEAN = [
    "s3://bucket/models/resnet50.onnx",
    "gs://bucket/model.safetensors",
    "az://container/model.bin",
    "hf://timm/resnet50.a1_in1k@0123abcd/model.onnx",
    "hf://gpt2@main/config.json",  # a repo without an org and a revision, not a user
    "https://h.example/m.onnx?download=1&st=2&sv=3",  # SAS-like names without a sig
    "https://h/x?",
    "https://h/x?a&&b=",
    "zip://inner.txt::s3://bucket/archive.zip",
    "simplecache::https://h/x",
    "http://[2001:db8::1]/m",
    "models/resnet50.onnx",
    "/abs/path/with?token=x",  # a local path: not a URL, left alone
    "C:\\models\\x.onnx",
    "file:///tmp/m.onnx",
    "",
]


@pytest.mark.parametrize(("url", "redacted", "stripped"), CASES)
def test_redact_and_strip(url: str, redacted: str, stripped: str) -> None:
    assert redact_url(url) == redacted
    assert strip_credentials(url) == stripped
    assert has_credentials(url)
    assert not has_credentials(stripped)
    assert redact_url(redacted) == redacted  # idempotent
    assert strip_credentials(stripped) == stripped


@pytest.mark.parametrize("url", CLEAN)
def test_clean_urls_and_local_paths_untouched(url: str) -> None:
    assert redact_url(url) == url
    assert strip_credentials(url) == url
    assert not has_credentials(url)


SCHEMES = st.sampled_from(["http", "https", "s3", "gs", "az", "abfs", "hf", "sftp", "ftp"])
HOST = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,5})?(:[0-9]{2,5})?", fullmatch=True)
PATH = st.from_regex(r"(/[A-Za-z0-9._@-]{1,12}){0,4}", fullmatch=True)
CHAIN = st.sampled_from(["", "simplecache::", "blockcache::", "filecache::", "zip://a.txt::"])
SECRET = st.text(min_size=4, max_size=40)


@given(CHAIN, SCHEMES, st.text(max_size=12), SECRET, HOST, PATH, st.booleans())
def test_password_never_survives(
    chain: str, scheme: str, user: str, password: str, host: str, path: str, query: bool
) -> None:
    pw = quote(password, safe="")  # a valid URL carries it percent-encoded
    rest = f"{host}{path}" + ("?v=1#f" if query else "")
    assume(pw not in f"{chain}{scheme}://{rest}")
    url = f"{chain}{scheme}://{quote(user, safe='')}:{pw}@{rest}"
    assert has_credentials(url)
    for out in (redact_url(url), strip_credentials(url)):
        assert pw not in out
        assert out.endswith(rest)


SECRET_KEY = st.sampled_from(["X-Amz-Signature", "sig", "token", "key", "api_key", "password"])


@given(SCHEMES, HOST, PATH, SECRET_KEY, SECRET)
def test_secret_query_value_never_survives(
    scheme: str, host: str, path: str, key: str, secret: str
) -> None:
    value = quote(secret, safe="")
    base = f"{scheme}://{host}{path}"
    assume(value not in base + key)
    url = f"{base}?{key}={value}&keep=1"
    assert has_credentials(url)
    assert redact_url(url) == f"{base}?{key}=***&keep=1"
    assert strip_credentials(url) == f"{base}?keep=1"


@given(st.text(max_size=60))
def test_never_raises_and_is_idempotent(url: str) -> None:
    stripped = strip_credentials(url)
    assert strip_credentials(stripped) == stripped
    assert redact_url(redact_url(url)) == redact_url(url)


RAW_SECRET = st.text(
    st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), min_size=4, max_size=30
)


@given(CHAIN, SCHEMES, RAW_SECRET, HOST, PATH)
def test_unencoded_password_never_survives(
    chain: str, scheme: str, password: str, host: str, path: str
) -> None:
    """Hand-written URLs often leave `@`, `:` or `::` in the password unencoded."""
    rest = f"{host}{path}"
    assume(password not in f"{chain}{scheme}://u:@{rest}")
    url = f"{chain}{scheme}://u:{password}@{rest}"
    assert has_credentials(url)
    assert password not in redact_url(url)
    assert password not in strip_credentials(url)

"""Credentials in source URLs: redact them for display, strip them for recording. Pure.

A credential is the userinfo of a URL (`https://user:pw@host/…`, also a bare token used as a
user name) or a secret query parameter: a signature (`X-Amz-Signature`, `X-Goog-Signature`,
Azure SAS `sig`, `Signature`), a token or key (`token`, `access_token`, `key`, `api_key`,
`password`, `secret`, …). When a query is signed, the whole signing family goes with it
(every `X-Amz-*` beside an AWS signature, every SAS field beside `sig`, `Expires` beside a
v2 `Signature`), so a stripped URL is the plain object URL. Chained fsspec URLs
(`simplecache::s3://…`) are handled link by link; anything without `://` (a local path) is
returned untouched. In `hf://` URLs a user name without a password is a repository
(`hf://gpt2@main/config.json`), not a credential.

Example:
    >>> redact_url("https://user:pw@h.example/x?X-Amz-Signature=abc&v=1")
    'https://***@h.example/x?X-Amz-Signature=***&v=1'
    >>> strip_credentials("simplecache::https://h.example/m.onnx?sig=abc&sv=2024&se=x")
    'simplecache::https://h.example/m.onnx'
    >>> has_credentials("s3://bucket/model.onnx")
    False
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
SECRET_PARAMS = frozenset(
    {
        "x-amz-signature", "x-amz-credential", "x-amz-security-token",
        "x-goog-signature", "x-goog-credential", "signature", "sig",
        "token", "access_token", "id_token", "refresh_token", "auth", "authorization",
        "key", "api_key", "apikey", "api-key", "password", "passwd", "pwd",
        "secret", "client_secret", "awsaccesskeyid", "googleaccessid", "ossaccesskeyid",
    }
)  # fmt: skip
AZURE_SAS = frozenset(
    {
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "si", "sdd", "ses",
        "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
    }
)  # fmt: skip
# `::` joins fsspec links when a protocol follows (`simplecache::s3://…`); never inside `[::1]`
_CHAIN = re.compile(r"::(?=[A-Za-z][A-Za-z0-9+.-]*(?:://|::))")
# userinfo: everything up to the last `@` before the authority ends (a password may hold `@`)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/?#]*)@")


def redact_url(url: str) -> str:
    """The URL with every credential value replaced by `***` (keys kept): safe to show."""
    return _clean(url, strip=False)


def strip_credentials(url: str) -> str:
    """The URL without userinfo or secret query parameters: what a manifest or lockfile records."""
    return _clean(url, strip=True)


def has_credentials(url: str) -> bool:
    """True when the URL (or any link of a chained URL) carries a credential."""
    return strip_credentials(url) != url


def _clean(url: str, strip: bool) -> str:
    # userinfo first, over the whole string: a raw `::` inside a password must not hide it
    url = _USERINFO.sub(lambda m: _userinfo(m, strip), url)
    return "::".join(_clean_query(link, strip) for link in _CHAIN.split(url))


def _userinfo(m: re.Match[str], strip: bool) -> str:
    userinfo = m.group("userinfo")
    if not userinfo or (m.group("scheme").lower() == "hf" and ":" not in userinfo):
        return m.group(0)  # `hf://gpt2@main/…` names a revision, not a user
    return f"{m.group('scheme')}://" + ("" if strip else f"{MASK}@")


def _clean_query(link: str, strip: bool) -> str:
    """A link with its secret query parameters redacted or removed; local paths untouched."""
    if "://" not in link:
        return link
    before, q, after = link.partition("?")
    if not q:
        return link
    query, hashmark, fragment = after.partition("#")
    pairs = [p.partition("=") for p in query.split("&")]
    keys = {_key(k) for k, _, _ in pairs}
    if not any(_is_secret(k, keys) for k in keys):
        return link
    kept = []
    for k, eq, v in pairs:
        if not _is_secret(_key(k), keys):
            kept.append(f"{k}{eq}{v}")
        elif not strip:
            kept.append(f"{k}={MASK}")
    query = "&".join(kept)
    return f"{before}{'?' if query else ''}{query}{hashmark}{fragment}"


def _key(raw: str) -> str:
    return unquote(raw).strip().lower()


def _is_secret(key: str, keys: set[str]) -> bool:
    if key in SECRET_PARAMS:
        return True
    if key.startswith("x-amz-") and keys & {"x-amz-signature", "x-amz-credential"}:
        return True
    if key.startswith("x-goog-") and keys & {"x-goog-signature", "x-goog-credential"}:
        return True
    if key in AZURE_SAS and "sig" in keys:
        return True
    return key == "expires" and "signature" in keys

"""Makes a bordergate refusal raise `TransferRefused`, naming the rule, article and remedy.

Call `install()` once; it hooks whichever of requests, fsspec (http/https) and
huggingface_hub are installed (and so datasets, which reads through the last two).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

__all__ = [
    "TransferRefused",
    "refusal",
    "install",
    "install_requests",
    "install_fsspec",
    "install_hub",
    "session",
]

PROBLEM_PREFIX = "urn:bordergate:problem:"


class TransferRefused(PermissionError):
    """The gateway refused the request: HTTP `status`, the deciding `rule` and its legal
    `article`, the `reason` in words, what to do about it (`remedy`) and the `request_id`
    to quote to the data protection officer."""

    def __init__(
        self,
        status: int,
        rule: str,
        article: str | None = None,
        reason: str | None = None,
        remedy: str | None = None,
        request_id: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.rule = rule
        self.article = article
        self.reason = reason
        self.remedy = remedy
        self.request_id = request_id
        self.url = url
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" {self.url}" if self.url else ""
        m = f"bordergate refused{where}: {self.status}, rule {self.rule}"
        if self.article:
            m += f" ({self.article})"
        if self.reason:
            m += f": {self.reason}"
        if self.remedy:
            m += f"\nremedy: {self.remedy}"
        if self.request_id:
            m += f"\nrequest id: {self.request_id}"
        return m

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return (
            type(self),
            (self.status, self.rule, self.article, self.reason, self.remedy, self.request_id, self.url),
        )


_DECISION = re.compile(r'(\w+)="([^"]*)"')


def refusal(status: int, headers: Mapping[str, str], body: bytes | None, url: str | None = None) -> TransferRefused | None:
    """The refusal a gateway response carries, or None when it is not one (success, or an
    error without a deciding rule such as 404 or 502). Reads the problem+json body, or for
    a HEAD the `Bordergate-Decision`, `X-Error-Message` and `X-Request-Id` headers."""
    if status < 400:
        return None
    doc: dict[str, Any] = {}
    ctype = (headers.get("content-type") or "").lower()
    if body and "json" in ctype:
        try:
            v = json.loads(body)
        except ValueError:
            v = None
        if isinstance(v, dict) and str(v.get("type", "")).startswith(PROBLEM_PREFIX):
            doc = v
    if doc:
        if not doc.get("rule"):
            return None
        return TransferRefused(
            status,
            doc["rule"],
            doc.get("article") or None,
            doc.get("detail") or None,
            doc.get("remedy") or None,
            doc.get("request_id") or None,
            url,
        )
    decision = headers.get("bordergate-decision") or ""
    if not decision.startswith("deny"):
        return None
    fields = dict(_DECISION.findall(decision))
    if not fields.get("rule"):
        return None
    reason = headers.get("x-error-message") or None
    if reason:
        reason = reason.removeprefix("bordergate: ")
        reason = re.sub(r" \(rule [^()]*\)$", "", reason)
    return TransferRefused(
        status,
        fields["rule"],
        fields.get("article") or None,
        reason,
        headers.get("bordergate-remedy") or None,
        headers.get("x-request-id") or None,
        url,
    )


def session(s=None):
    """A `requests.Session` (or `s`) on which a refusal raises `TransferRefused`."""
    from ._requests import hook_session

    return hook_session(s)


def install_requests() -> bool:
    """Every new `requests.Session`, and so `requests.get` and friends, raise on a refusal."""
    try:
        from ._requests import install
    except ImportError:
        return False
    install()
    return True


def install_fsspec() -> bool:
    """fsspec's http and https filesystems (pandas, pyarrow and datasets read through them)
    raise on a refusal instead of `FileNotFoundError`."""
    try:
        from ._fsspec import install
    except ImportError:
        return False
    install()
    return True


def install_hub() -> bool:
    """huggingface_hub's HTTP client (and datasets' hub loading) raise on a refusal."""
    try:
        from ._hub import install
    except ImportError:
        return False
    install()
    return True


def install() -> dict[str, bool]:
    """Hooks every supported library that is installed; says which."""
    return {
        "requests": install_requests(),
        "fsspec": install_fsspec(),
        "huggingface_hub": install_hub(),
    }

"""The requests hook: a response hook that raises `TransferRefused` (also a
`requests.HTTPError`) on a refusal, on one session or on every new one."""

from __future__ import annotations

import requests

from . import TransferRefused, refusal


class RequestsTransferRefused(TransferRefused, requests.HTTPError):
    """A refusal seen by requests: `except requests.HTTPError` still catches it, and
    `response` is the gateway's answer."""

    def __init__(self, *args, response=None, **kwargs) -> None:
        TransferRefused.__init__(self, *args, **kwargs)
        self.response = response
        self.request = getattr(response, "request", None)

    def __reduce__(self):
        return (TransferRefused, TransferRefused.__reduce__(self)[1])


def response_hook(r: requests.Response, *args, **kwargs) -> requests.Response:
    if r.status_code < 400:
        return r
    body = r.content if r.request is None or r.request.method != "HEAD" else b""
    found = refusal(r.status_code, r.headers, body, r.url)
    if found is None:
        return r
    raise RequestsTransferRefused(
        found.status,
        found.rule,
        found.article,
        found.reason,
        found.remedy,
        found.request_id,
        found.url,
        response=r,
    )


def hook_session(s: requests.Session | None = None) -> requests.Session:
    s = s if s is not None else requests.Session()
    hooks = s.hooks.setdefault("response", [])
    if response_hook not in hooks:
        hooks.append(response_hook)
    return s


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    original = requests.Session.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        hook_session(self)

    requests.Session.__init__ = __init__
    _installed = True

"""The huggingface_hub hook: a client factory whose httpx client raises `TransferRefused`
on a refusal, before the hub's own handling can wrap it in "check your connection"."""

from __future__ import annotations

import huggingface_hub
from huggingface_hub.utils import _http

from . import refusal


def _response_hook(response) -> None:
    if response.status_code < 400:
        return
    body = b""
    if response.request.method != "HEAD":
        response.read()
        body = response.content
    found = refusal(response.status_code, response.headers, body, str(response.request.url))
    if found is not None:
        raise found


def client_factory():
    client = _http.default_client_factory()
    hooks = dict(client.event_hooks)
    hooks["response"] = [*hooks.get("response", []), _response_hook]
    client.event_hooks = hooks
    return client


def install() -> None:
    huggingface_hub.set_client_factory(client_factory)

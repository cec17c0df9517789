"""The fsspec hook: an HTTP filesystem, registered for `http` and `https`, whose aiohttp
session checks each response (aiohttp's `raise_for_status` callable) and which lets a
refusal through where fsspec would turn it into `FileNotFoundError` or "does not exist"."""

from __future__ import annotations

import fsspec
from fsspec.implementations.http import HTTPFileSystem

from . import TransferRefused, refusal


async def check_response(resp) -> None:
    """aiohttp's `raise_for_status` hook: raises `TransferRefused` on a refusal and leaves
    every other response to fsspec."""
    if resp.status < 400:
        return
    body = b"" if resp.method == "HEAD" else await resp.read()
    found = refusal(resp.status, resp.headers, body, str(resp.url))
    if found is not None:
        raise found


def _refusal_in(e: BaseException) -> TransferRefused | None:
    seen = set()
    c: BaseException | None = e
    while c is not None and id(c) not in seen:
        if isinstance(c, TransferRefused):
            return c
        seen.add(id(c))
        c = c.__cause__ or c.__context__
    return None


class BordergateHTTPFileSystem(HTTPFileSystem):
    """fsspec's HTTP filesystem on which a refusal raises `TransferRefused`."""

    def __init__(self, *args, client_kwargs=None, **kwargs):
        client_kwargs = dict(client_kwargs or {})
        client_kwargs.setdefault("raise_for_status", check_response)
        super().__init__(*args, client_kwargs=client_kwargs, **kwargs)

    async def _info(self, url, **kwargs):
        try:
            return await super()._info(url, **kwargs)
        except FileNotFoundError as e:
            found = _refusal_in(e)
            if found is None:
                raise
        # Raised outside the handler: the refusal is the cause of fsspec's error, so making
        # that error its context would close a loop.
        raise found


def install() -> None:
    for protocol in ("http", "https"):
        fsspec.register_implementation(protocol, BordergateHTTPFileSystem, clobber=True)

"""hearth.http's bounded body reader, on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.http import EXCEPTION_HANDLERS, XrpcError, parse_json_object, read_json_body
from tests.servers import serve_app


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_nesting_is_counted_outside_strings_only() -> None:
    assert parse_json_object(nested(32)) is not None
    with pytest.raises(XrpcError) as refused:
        parse_json_object(nested(33))
    assert refused.value.status == 400
    deep_looking = b'{"s":"' + b"[" * 1000 + b'\\"' + b"{" * 1000 + b'"}'
    assert parse_json_object(deep_looking)["s"].startswith("[[[")
    for bad in (b"[" * 100_000, b"[1]", b"\xff", b'{"a":', b'"unterminated' + b"[" * 99):
        with pytest.raises(XrpcError) as refused:
            parse_json_object(bad)
        assert refused.value.status == 400


def test_lone_surrogates_are_refused_escaped_or_raw() -> None:
    for bad in (
        b'{"a":"\\ud800"}',
        b'{"a":["x","\\uDFFF"]}',
        b'{"\\udbff":1}',
        b'{"a":"\xed\xa0\x80"}',  # json.loads(bytes) decodes these bytes to one
        '{"a":"x"}'.encode("utf-16"),
    ):
        with pytest.raises(XrpcError) as refused:
            parse_json_object(bad)
        assert refused.value.status == 400, bad
    assert parse_json_object(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert parse_json_object(b'{"a":"\\\\ud800"}') == {"a": "\\ud800"}
    kept = parse_json_object(b'{"a":"\\ud800"}', allow_lone_surrogates=True)
    assert kept == {"a": "\ud800"}


async def test_bodies_over_the_limit_are_413_declared_or_streamed() -> None:
    async def echo(request: Request) -> Response:
        return JSONResponse(await read_json_body(request, 1000))

    app = Starlette(
        routes=[Route("/x", echo, methods=["POST"])], exception_handlers=EXCEPTION_HANDLERS
    )

    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b" " * 100

    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/x", content=b'{"a": [1]}')).json() == {"a": [1]}
        r = await client.post("/x", content=b"{}" + b" " * 1000)
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
        r = await client.post("/x", content=chunks(100))  # chunked, no Content-Length
        assert r.status_code == 413
        r = await client.post("/x", content=b"[" * 900)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest"

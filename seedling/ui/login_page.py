"""The login page tells nothing about the API behind it.

Gradio renders its login page from the same template as the app and embeds the whole API
description there (`window.gradio_api_info`), although `/gradio_api/info` itself answers 401
without a login. This ASGI middleware (passed to the FastAPI app through `launch(app_kwargs=...)`)
blanks that one variable in HTML pages that ask for a login; every other response passes through
untouched."""

from __future__ import annotations

import re

_API_INFO = re.compile(rb"window\.gradio_api_info\s*=\s*.*?;\s*</script>", re.DOTALL)
_LOGIN = re.compile(rb'"auth_required"\s*:\s*true')


class HideApiInfoOnLogin:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def capture(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)
                    start = {}
                    return
                start = message
                return
            if start == {}:  # not HTML: streamed as it comes
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if _LOGIN.search(body):
                body = _API_INFO.sub(b"window.gradio_api_info = null;</script>", body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

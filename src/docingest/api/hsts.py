"""HTTP Strict Transport Security (45 CFR 164.312(e)(2)(ii)): once a browser has seen the API
over HTTPS it refuses plain HTTP to it for a year. Sent on every response served over TLS
(`docingest api --ssl-certfile`, the ASGI scope's scheme is `https`) or, behind a TLS
terminating proxy, on every response when DOCINGEST_PUBLIC_URL is https://."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class StrictTransportSecurity:
    """ASGI middleware adding the HSTS header to HTTPS responses (all responses if `always`)."""

    def __init__(self, app: ASGIApp, always: bool) -> None:
        self.app = app
        self.always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.always or scope.get("scheme") == "https"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)

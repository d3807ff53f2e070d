"""How uvicorn runs the gateway, in one place (`serve()` and the tests' live gateway both take these):
httptools with admission decided in the protocol (admission.py), a deadline on each request's headers, and a
connection closed once its answer is sent while the request's body is still unread."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crossdeploy.settings import Settings

from .admission import AdmittingProtocol

_SLOW = b"request headers did not arrive in time"
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s" % (len(_SLOW), _SLOW))


class DeadlineHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with what it lacks against slow clients. uvicorn times a connection out
    only while idle between requests, and any byte restarts that clock: a client sending a header line now and
    then (slowloris), or connecting and saying nothing, held its connection for ever. Here the request line and
    headers must arrive within `header_timeout_s` of the connection (or of the next request's first byte).
    The body's own deadline is the app's (serving/http.py), which can answer in the protocol's format."""

    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._header_deadline = None
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # An answer sent before the body was read (413 on a declared length, 408, a refusal): the rest of the
        # body would only keep the connection busy, and a lying Content-Length would keep it for ever.
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            self.transport.close()
        super().on_response_complete()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()


def uvicorn_options(settings: Settings, app) -> dict[str, Any]:
    """Keyword arguments for uvicorn.Config/uvicorn.run beside the app (made by create_app), host and port."""
    protocol = type("GatewayProtocol", (AdmittingProtocol, DeadlineHttpTools),
                    {"header_timeout_s": settings.header_timeout_s, "admission": app.state.admission})
    return {"http": protocol, "loop": "uvloop", "timeout_graceful_shutdown": 5}

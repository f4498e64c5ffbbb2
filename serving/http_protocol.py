"""uvicorn's HTTP/1.1 protocol with a deadline on each request's headers.

uvicorn times a keep-alive connection out between requests, and the app times the body
(``body_timeout_s``), but nothing bounds how long a request's headers may take to arrive:
a client that sends one header byte every few seconds (slowloris) holds a connection,
and with them the connection cap, for as long as it likes. Here the headers of a request
must be complete within ``header_timeout`` seconds of its first byte (of the connection,
for the first request); otherwise the server answers 408 with a JSON body and closes.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from settings import current

BODY = b'{"detail":"Request headers did not arrive in time"}'
ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(BODY), BODY)
)


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # its headers were parsed
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        # written as bytes: h11 will not send a response before it has read a request
        self.transport.write(ANSWER)
        self.transport.close()


class SettingsHeaderDeadline(HeaderDeadlineProtocol):
    """The deadline from the settings (``COGRAPH_HEADER_TIMEOUT_SECONDS``): for worker
    processes, which get the protocol class by its name, not as a class made at run time."""

    header_timeout = current().header_timeout_seconds


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``http=``) for a ``seconds`` header deadline."""
    return type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout": seconds})

"""Exceptions of the spool client: one class per error code of docs/PROTOCOL.md.

Every exception is a :class:`SpoolError`. Errors the server sends carry their wire ``code``
(1..99); errors the client produces itself (connection closed, protocol violation, timeout,
invalid argument) carry the code libspool uses for them (100 and up, never sent on the wire).
``retryable`` says whether the same request may succeed later unchanged.
"""

from __future__ import annotations


class SpoolError(Exception):
    """Base of every spool error."""

    code: int = 0
    name: str = "ERROR"
    retryable: bool = False
    #: True when the connection is unusable after this error (the server closed it).
    closes_connection: bool = False

    def __init__(self, message: str = "", code: int | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{self.name}: {message}" if message else self.name)


# ---- errors sent by the server (wire codes) ----


class BadFrame(SpoolError):
    code, name, closes_connection = 1, "BAD_FRAME", True


class TooLarge(SpoolError):
    code, name = 2, "TOO_LARGE"


class UnknownOp(SpoolError):
    code, name = 3, "UNKNOWN_OP"


class BadRequest(SpoolError):
    code, name = 4, "BAD_REQUEST"


class VersionUnsupported(SpoolError):
    code, name, closes_connection = 5, "VERSION_UNSUPPORTED", True


class HandshakeRequired(SpoolError):
    code, name, closes_connection = 6, "HANDSHAKE_REQUIRED", True


class AuthFailed(SpoolError):
    code, name, closes_connection = 7, "AUTH_FAILED", True


class NotFound(SpoolError):
    code, name = 8, "NOT_FOUND"


class LeaseExpired(SpoolError):
    code, name = 9, "LEASE_EXPIRED"


class WrongState(SpoolError):
    code, name = 10, "WRONG_STATE"


class QueueFull(SpoolError):
    code, name, retryable = 11, "QUEUE_FULL", True


class DiskFull(SpoolError):
    code, name, retryable = 12, "DISK_FULL", True


class Busy(SpoolError):
    code, name, retryable = 13, "BUSY", True


class ShuttingDown(SpoolError):
    code, name, retryable = 14, "SHUTTING_DOWN", True


class InternalError(SpoolError):
    """A server fault, or an error code this client does not know (``code`` keeps it)."""

    code, name = 15, "INTERNAL"


class TooManyQueues(SpoolError):
    """A new queue would exceed the server's --max-queues: delete or empty some queues."""

    code, name = 16, "TOO_MANY_QUEUES"


# ---- errors produced by the client ----


class ConnectionClosed(SpoolError, ConnectionError):
    """The server closed or reset the connection (or it was closed here)."""

    code, name, closes_connection = 100, "CONNECTION_CLOSED", True


class ConnectFailed(ConnectionClosed):
    """No connection could be made (refused, unreachable, unresolvable address)."""

    name = "CONNECT_FAILED"


class ProtocolError(SpoolError):
    """The server sent bytes that do not follow the protocol; the connection is dropped."""

    code, name, closes_connection = 101, "PROTOCOL", True


class TimedOut(SpoolError, TimeoutError):
    """A connect or I/O timeout expired; the connection is dropped (its stream may be mid-frame)."""

    code, name, retryable, closes_connection = 102, "TIMED_OUT", True, True


class InvalidArgument(SpoolError, ValueError):
    """A caller argument is out of range; nothing was sent."""

    code, name = 104, "INVALID_ARGUMENT"


_BY_CODE: dict[int, type[SpoolError]] = {
    cls.code: cls
    for cls in (
        BadFrame, TooLarge, UnknownOp, BadRequest, VersionUnsupported, HandshakeRequired,
        AuthFailed, NotFound, LeaseExpired, WrongState, QueueFull, DiskFull, Busy, ShuttingDown,
        InternalError, TooManyQueues,
    )
}


def error_from_wire(code: int, message: str) -> SpoolError:
    """The exception for a wire error code; an unknown code is an :class:`InternalError`
    that keeps the code (protocol rule: codes a client does not know mean INTERNAL)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return InternalError(f"unknown error code {code}: {message}", code=code)
    return cls(message)


__all__ = [
    "SpoolError", "BadFrame", "TooLarge", "UnknownOp", "BadRequest", "VersionUnsupported",
    "HandshakeRequired", "AuthFailed", "NotFound", "LeaseExpired", "WrongState", "QueueFull",
    "DiskFull", "Busy", "ShuttingDown", "InternalError", "TooManyQueues", "ConnectionClosed", "ConnectFailed", "ProtocolError",
    "TimedOut", "InvalidArgument", "error_from_wire",
]

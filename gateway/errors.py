"""The error hierarchy: each error carries an HTTP status, a stable reason id and a public message."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error turned into a client response in exactly one place (``pipeline.handle``).

    ``status`` is the HTTP status, ``reason_id`` a stable snake_case id used in
    logs and metric labels, ``public_message`` the only text the client sees.
    ``headers`` are extra response headers (e.g. ``WWW-Authenticate``).
    """

    status: int = 500
    reason_id: str = "internal_error"
    public_message: str = "internal error"

    def __init__(
        self,
        public_message: str | None = None,
        *,
        reason_id: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if public_message is not None:
            self.public_message = public_message
        if reason_id is not None:
            self.reason_id = reason_id
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = headers or {}
        super().__init__(f"{self.reason_id}: {self.public_message}")

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client: ``{"error": "<message>"}``.

        kagent's handlers answer errors this way (kagent-dev/kagent,
        release/v0.10.x: ``go/api/httpapi/types.go`` ``APIError``,
        ``go/core/internal/httpserver/middleware_error.go`` ``RespondWithError``),
        and its UI shows ``error`` as the toast text (``ui/src/app/actions/utils.ts``
        ``fetchApi``), so it must be the message, a string.
        """
        return {"error": self.public_message}


class BadRequest(GatewayError):
    """Malformed input from the client (400)."""

    status = 400
    reason_id = "bad_request"
    public_message = "bad request"


class Unauthenticated(GatewayError):
    """No valid identity where one is required (401 with ``WWW-Authenticate``)."""

    status = 401
    reason_id = "identity_missing"
    public_message = "authentication required"


class Forbidden(GatewayError):
    """A policy denial (403)."""

    status = 403
    reason_id = "forbidden"
    public_message = "forbidden"


class NotFound(GatewayError):
    """Not found, or not the caller's to see (404; never reveals existence)."""

    status = 404
    reason_id = "not_found"
    public_message = "not found"


class PayloadTooLarge(GatewayError):
    """A request body over the configured cap (413)."""

    status = 413
    reason_id = "body_too_large"
    public_message = "request body too large"


class DependencyUnavailable(GatewayError):
    """The share store (and every cache in front of it) cannot answer: fail closed (503)."""

    status = 503
    reason_id = "store_unavailable"
    public_message = "share validation is temporarily unavailable"


class UpstreamUnreachable(GatewayError):
    """The upstream refused or dropped the connection before answering (502)."""

    status = 502
    reason_id = "upstream_unreachable"
    public_message = "upstream unreachable"


class UpstreamTimeout(GatewayError):
    """The upstream did not answer within the configured timeout (504)."""

    status = 504
    reason_id = "upstream_timeout"
    public_message = "upstream timed out"


class JsonRpcError(GatewayError):
    """A denial on an A2A route, rendered as a JSON-RPC 2.0 error object echoing the request id.

    Codes follow JSON-RPC 2.0 §5.1: -32700 parse error, -32600 invalid request,
    -32602 invalid params; policy denials use -32003 (in the server-defined range).
    """

    def __init__(
        self,
        public_message: str,
        *,
        code: int,
        request_id: Any = None,
        reason_id: str,
        status: int,
    ) -> None:
        super().__init__(public_message, reason_id=reason_id, status=status)
        self.code = code
        self.request_id = request_id

    def body(self) -> dict[str, Any]:
        return {
            "jsonrpc": "2.0",
            "id": self.request_id,
            "error": {"code": self.code, "message": self.public_message},
        }

    @classmethod
    def from_error(cls, error: GatewayError, request_id: Any) -> JsonRpcError:
        """Re-express any gateway error as a JSON-RPC error for an A2A route."""
        if isinstance(error, JsonRpcError):
            return error
        code = -32600 if error.status < 500 else -32603
        if error.status == 403:
            code = -32003
        rpc = cls(
            error.public_message,
            code=code,
            request_id=request_id,
            reason_id=error.reason_id,
            status=error.status,
        )
        rpc.headers = error.headers
        return rpc

"""OpenAPI 3.1 document for the share management API (served at ``/openapi.json`` on the admin listener)."""

from __future__ import annotations

from typing import Any

from gateway import __version__


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    """kagent's success envelope (``go/api/httpapi/types.go`` ``StandardResponse``)."""
    return {
        "type": "object",
        "required": ["error", "data", "message"],
        "properties": {
            "error": {"const": False},
            "data": data,
            "message": {"type": "string"},
        },
    }


_TIME = {"type": ["string", "null"], "format": "date-time"}
_SHARE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "session_id", "user_id", "read_only", "token_prefix", "created_at", "active"],
    "properties": {
        "id": {"type": "string", "pattern": "^sh_[0-9a-f]{32}$"},
        "session_id": {"type": "string"},
        "user_id": {"type": "string"},
        "read_only": {"type": "boolean"},
        "label": {"type": ["string", "null"], "maxLength": 200},
        "token_prefix": {"type": "string"},
        "created_at": _TIME,
        "expires_at": _TIME,
        "revoked_at": _TIME,
        "active": {"type": "boolean"},
    },
}
_TOKEN = {"type": "string", "minLength": 43, "pattern": "^[A-Za-z0-9_-]+$"}
_URL = {
    "type": "string",
    "description": "the share link (shares.link_template); absent when its placeholders cannot be filled",
}
_CREATED = {
    **_SHARE,
    "required": [*_SHARE["required"], "token"],
    "properties": {**_SHARE["properties"], "token": _TOKEN, "url": _URL},
}
_LISTED = {
    **_SHARE,
    "required": [*_SHARE["required"], "viewers", "access_count"],
    "properties": {
        **_SHARE["properties"],
        "viewers": {"type": "integer", "minimum": 0},
        "access_count": {"type": "integer", "minimum": 0},
        "last_accessed_at": _TIME,
        "token": {**_TOKEN, "description": "only with shares.token_storage encrypted, for live shares"},
        "url": _URL,
    },
}
# kagent's error body (go/api/httpapi/types.go APIError): its UI shows ``error`` as the toast.
_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
        }
    },
}
_ERRORS = {str(code): _ERROR for code in (400, 401, 404, 429, 502, 503, 504)}
_SESSION = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}


def document() -> dict[str, Any]:
    """The share API as OpenAPI 3.1 (paths and envelope follow kagent's controller)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "share-gateway share API",
            "version": __version__,
            "description": "Create, list and revoke share links for a session. Only the session "
            "owner may call these; anyone else gets 404. The token is returned on creation, and "
            "in the list only with shares.token_storage encrypted. Errors are {\"error\": message}.",
        },
        "paths": {
            "/api/sessions/{session_id}/shares": {
                "parameters": [_SESSION],
                "get": {
                    "operationId": "listShares",
                    "parameters": [
                        {
                            "name": "include",
                            "in": "query",
                            "required": False,
                            "description": "inactive: revoked and expired shares too",
                            "schema": {"type": "string", "enum": ["inactive"]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the owner's live shares of the session, newest first",
                            "content": {
                                "application/json": {"schema": _envelope({"type": "array", "items": _LISTED})}
                            },
                        },
                        **_ERRORS,
                    },
                },
                "post": {
                    "operationId": "createShare",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "read_only": {"type": "boolean", "default": True},
                                        "expires_in": {"type": "integer", "minimum": 1},
                                        "label": {"type": "string", "maxLength": 200},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "the new share, with its token (shown only here)",
                            "content": {"application/json": {"schema": _envelope(_CREATED)}},
                            "links": {
                                "revoke": {
                                    "operationId": "revokeShare",
                                    "parameters": {
                                        "session_id": "$request.path.session_id",
                                        "share_ref": "$response.body#/data/id",
                                    },
                                }
                            },
                        },
                        **_ERRORS,
                    },
                },
            },
            "/api/sessions/{session_id}/shares/{share_ref}": {
                "parameters": [
                    _SESSION,
                    {
                        "name": "share_ref",
                        "in": "path",
                        "required": True,
                        "description": "a share id (sh_…) or the token itself",
                        "schema": {"type": "string", "minLength": 1},
                    },
                ],
                "delete": {
                    "operationId": "revokeShare",
                    "responses": {
                        "200": {
                            "description": "revoked on every replica",
                            "content": {
                                "application/json": {
                                    "schema": _envelope(
                                        {
                                            "type": "object",
                                            "required": ["id", "revoked"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "revoked": {"const": True},
                                            },
                                        }
                                    )
                                }
                            },
                        },
                        **_ERRORS,
                    },
                },
            },
        },
    }

"""Versioned schema migrations, written in SQL that SQLite and PostgreSQL both accept."""

from __future__ import annotations

# (version, statements). Append only; never edit an applied migration.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            """CREATE TABLE shares (
                id TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                token_prefix TEXT NOT NULL,
                session_id TEXT NOT NULL,
                owner_id TEXT NOT NULL,
                read_only BOOLEAN NOT NULL,
                label TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION
            )""",
            "CREATE INDEX shares_session_owner ON shares (session_id, owner_id)",
            """CREATE TABLE share_access (
                share_id TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
                user_id TEXT NOT NULL,
                first_accessed_at DOUBLE PRECISION NOT NULL,
                last_accessed_at DOUBLE PRECISION NOT NULL,
                access_count BIGINT NOT NULL,
                PRIMARY KEY (share_id, user_id)
            )""",
            """CREATE TABLE session_owners (
                session_id TEXT PRIMARY KEY,
                owner_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            # shares.token_storage: encrypted keeps each token sealed for its owner
            # (gateway/shares/tokens.py TokenCipher); NULL under hashed storage.
            "ALTER TABLE shares ADD COLUMN token_ciphertext TEXT",
            "ALTER TABLE shares ADD COLUMN token_key_id TEXT",
            # shares_opened_by(user): the shares a user has opened.
            "CREATE INDEX share_access_user ON share_access (user_id)",
        ),
    ),
]

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS share_gateway_schema (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""

"""One database-URL policy for every SQLAlchemy user (fastrl-tune's storage, the paper journal).

SQLAlchemy 2.1 maps a bare ``postgresql://`` to the psycopg 3 driver; fastrl's ``[postgres]``
extra installs psycopg2 (binary wheels everywhere). So a bare ``postgresql://`` (or
``postgres://``) URL is rewritten to the driver that is importable, psycopg2 first, then
psycopg 3; with neither it is an error that names the extra to install. A URL that names
its driver (``postgresql+psycopg://``) is left as written. ``optuna-dashboard`` takes the
rewritten form (``postgresql+psycopg2://...``).
"""

from __future__ import annotations

import importlib.util

POSTGRES_SCHEMES = ("postgresql", "postgres")
DRIVERS = (("psycopg2", "psycopg2"), ("psycopg", "psycopg"))  # (module, SQLAlchemy dialect)


class DriverError(ValueError):
    """No PostgreSQL driver is installed for a ``postgresql://`` URL."""


def with_driver(url: str) -> str:
    """``url`` with an importable PostgreSQL driver spelled out; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in POSTGRES_SCHEMES:
        return url
    for module, dialect in DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://{rest}"
    raise DriverError(
        f"{redact(url)} needs a PostgreSQL driver and none is installed: "
        "pip install 'fastrl[postgres]' (psycopg2-binary)"
    )


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def is_database_url(text: str) -> bool:
    """Whether ``text`` is an SQLAlchemy URL (``scheme://...``) rather than a file path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("_", "").isalnum()


__all__ = ["DriverError", "is_database_url", "redact", "with_driver"]

"""The embedded broker: kombu's SQLAlchemy transport, tuned for a SQLite file.

Two things differ from kombu's stock transport. It polls every 50 ms instead of
every second (the stock interval adds up to a second to every document, and its
``polling_interval`` option cannot be set: the transport hands every option to
``create_engine``). And SQLite connections wait for a busy writer instead of
failing at once with "database is locked".
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

ALIAS = "sluicesql"
POLL_SECONDS = 0.05
SQLITE_BUSY_SECONDS = 30


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self):  # noqa: ANN202 - kombu's signature
        from sqlalchemy import create_engine

        url = self.connection.client.hostname
        connect_args = {"timeout": SQLITE_BUSY_SECONDS} if url.startswith("sqlite") else {}
        return create_engine(url, connect_args=connect_args)


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = POLL_SECONDS


def register() -> None:
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"


def celery_url(broker_url: str) -> str:
    """Route ``sqla+…`` URLs to this transport; others pass through."""
    if broker_url.startswith("sqla+"):
        register()
        return f"{ALIAS}+{broker_url[len('sqla+'):]}"
    return broker_url

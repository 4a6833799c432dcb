"""Alembic environment of the workspace database. The service runs `upgrade head` itself at start
(store.py, `migrate`), handing over its connection in `config.attributes["connection"]`; the
`alembic` command line works too with `-x url=<SQLAlchemy URL>`. Logging is left to the service."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from services.workspace.models import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x url=<SQLAlchemy URL>")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: sa.Connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()

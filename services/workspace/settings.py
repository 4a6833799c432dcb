"""The agents' workspace's settings."""

from __future__ import annotations

from supportflow.settings import Settings


class WorkspaceSettings(Settings):
    # Its HTTP port, its database (SQLAlchemy URL; unset: a SQLite file under cache_dir), the key
    # that signs session cookies (unset: a random one per start, which logs everyone out at each
    # restart), the first admin's login (created at start when the database has no user) and the
    # first API token (Authorization: Bearer).
    workspace_http_port: int = 8090
    workspace_db_url: str = ""
    workspace_session_secret: str = ""
    workspace_admin_user: str = "admin"
    workspace_admin_password: str = ""
    workspace_api_token: str = ""
    workspace_rollback_owners: str = ""  # "archetype=username,...": who may pull each archetype back to draft-for-review
    workspace_redraft_deadline_s: float = 10.0  # deadline of the workspace's Drafter.Draft call (an agent's new draft)
    # The services it calls over gRPC (host:port): the drafter for a new draft, the learner for the panel.
    drafter_addr: str = "127.0.0.1:50063"
    learner_addr: str = "127.0.0.1:50065"

    @property
    def workspace_database_url(self) -> str:
        return self.workspace_db_url or f"sqlite:///{self.cache_dir / 'state' / 'workspace.sqlite'}"

"""The investigator's settings: the tenants' systems of record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from supportflow.settings import InvestigationSettings
from supportflow.systems import SystemsConfig, load_systems


class InvestigatorSettings(InvestigationSettings):
    # The per-tenant systems of record (account system, transactions, product events, changes,
    # incidents: base URLs and credentials by ${NAME} reference); the playbooks are tenant data
    # (tenants/<tenant>/playbooks/*.yaml). Unset: no tenant has connected systems and every
    # investigation is empty.
    systems_path: Path | None = None

    def systems(self, environ: Mapping[str, str] | None = None) -> SystemsConfig:
        """The systems file, its ${NAME} references (credentials) read from the environment; no
        tenant has systems when no file is set. Raises SystemsConfigError."""
        return load_systems(self.systems_path, os.environ if environ is None else environ)

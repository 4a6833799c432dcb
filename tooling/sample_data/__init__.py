"""Sample data shipped with Supportflow so the demo runs without anything outside the package.

- `kb_articles.jsonl.gz`: the Rho-Bank knowledge base (698 articles) from tau2-bench's
  banking_knowledge domain (MIT, Copyright (c) 2025 Sierra Research; LICENSE-tau2-bench). Cite Shi
  et al. (2026), arXiv:2603.04370, and Barres et al. (2025), arXiv:2506.07982. Synthetic.
- `banking77_train.csv.gz`: the Banking77 train split (CC BY 4.0, PolyAI; LICENSE-banking77).
  Cite Casanueva et al. (2020), "Efficient Intent Detection with Dual Sentence Encoders",
  arXiv:2003.04807. Real crowd-written queries.
- `sample_crm.json`: the demo's synthetic customers (cust-0001..cust-0050), the CRM the tools'
  fleets use unless SUPPORTFLOW_CRM_LOCATION names another (`tooling/settings.py`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from importlib import resources
from pathlib import Path
from typing import Iterator


def path(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


SAMPLE_CRM_PATH = path("sample_crm.json")


def kb_articles() -> Iterator[dict]:
    with gzip.open(path("kb_articles.jsonl.gz"), "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def banking77_rows() -> list[dict[str, str]]:
    with gzip.open(path("banking77_train.csv.gz"), "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(io.StringIO(handle.read())))

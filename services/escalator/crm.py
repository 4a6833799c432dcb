"""Account state for the context packet, from a CRM export: a JSON object keyed by customer id,
in the classifier's format `{customer_id: {"tier", "segment", "account_state": {field: value}}}`
(a flat `{customer_id: {field: value}}` is read too). The demo ships `sample_crm.json`, the same
synthetic customers cust-0001..cust-0050 as the classifier's, so tier and account state agree; a
deployment points `path` at its own export."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Mapping

SAMPLE_CRM = "sample_crm.json"


class CrmDirectory:
    def __init__(self, records: Mapping[str, Mapping[str, object]]) -> None:
        self._records = {str(customer): _flatten(fields) for customer, fields in records.items()}

    @classmethod
    def from_json(cls, path: Path | None = None) -> "CrmDirectory":
        """The shipped sample CRM, or the export at `path`."""
        if path is None:
            text = resources.files(__package__).joinpath(SAMPLE_CRM).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(f"{path or SAMPLE_CRM}: expected {{customer_id: {{field: value}}}}")
        return cls(data)

    def account_state(self, customer_id: str) -> dict[str, str] | None:
        """The customer's account fields, or None for an unknown (or missing) customer id."""
        record = self._records.get(customer_id) if customer_id else None
        return dict(record) if record is not None else None

    def __len__(self) -> int:
        return len(self._records)


def _flatten(record: Mapping[str, object]) -> dict[str, str]:
    """The account fields, with tier and segment beside them when the record has them."""
    nested = record.get("account_state")
    if isinstance(nested, Mapping):
        fields = {str(k): str(v) for k, v in nested.items()}
        fields.update({name: str(record[name]) for name in ("tier", "segment") if name in record})
        return fields
    return {str(k): str(v) for k, v in record.items()}

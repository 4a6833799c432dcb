"""What a tenant brings to the classifier as data, found when the service starts:

- `<tenants_dir>/<tenant>/intents/archetypes.yaml` and `intents/required_identifiers.yaml`: the
  catalog of the tenant's own taxonomy (the schema of the classifier's own two files);
- `<tenants_dir>/<tenant>/routing_policy.yaml`: its routing policy;
- `<intent_models_dir>/<tenant>/`: its intent model, trained from `intents/examples.csv` by
  `supportflow classifier train --tenant <tenant>`.

Each is independent: a tenant without one of them gets the deployment's (the shipped catalog,
SUPPORTFLOW_ROUTING_POLICY_PATH, SUPPORTFLOW_INTENT_MODEL_DIR). Everything is read at start-up, so
a malformed file stops the classifier with an error naming it, instead of a tenant silently
falling back to another tenant's taxonomy. A tenant added later is picked up at the next start.
"""

from __future__ import annotations

from pathlib import Path

from supportflow.settings import SettingsError

from services.classifier.intent_catalog import CatalogError, IntentCatalog, load_intent_catalog
from services.classifier.intent_model import MANIFEST

ARCHETYPES_FILE = Path("intents") / "archetypes.yaml"
REQUIRED_IDENTIFIERS_FILE = Path("intents") / "required_identifiers.yaml"
EXAMPLES_FILE = Path("intents") / "examples.csv"
ROUTING_POLICY_FILE = Path("routing_policy.yaml")


def tenant_folders(root: Path) -> dict[str, Path]:
    """tenant id -> its folder under `root` (hidden folders, such as a model being written, skipped)."""
    if not root.is_dir():
        return {}
    return {folder.name: folder for folder in sorted(root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")}


def tenant_catalogs(tenants_dir: Path) -> dict[str, IntentCatalog]:
    """The catalog of every tenant that has intents/archetypes.yaml; raises CatalogError naming the
    file when one is malformed, or when required_identifiers.yaml is missing beside it."""
    catalogs = {}
    for tenant, folder in tenant_folders(tenants_dir).items():
        archetypes = folder / ARCHETYPES_FILE
        if not archetypes.is_file():
            continue
        required = folder / REQUIRED_IDENTIFIERS_FILE
        if not required.is_file():
            raise CatalogError(f"{required}: missing; tenant {tenant!r} has {archetypes}, which needs it beside it")
        catalogs[tenant] = load_intent_catalog(archetypes, required)
    return catalogs


def tenant_policy_paths(tenants_dir: Path) -> dict[str, Path]:
    """tenant -> its routing_policy.yaml, for every tenant that has one (PolicyStore reads them)."""
    return {
        tenant: folder / ROUTING_POLICY_FILE
        for tenant, folder in tenant_folders(tenants_dir).items()
        if (folder / ROUTING_POLICY_FILE).is_file()
    }


def tenant_model_dirs(models_dir: Path | None) -> dict[str, Path]:
    """tenant -> its intent model's folder under SUPPORTFLOW_INTENT_MODELS_DIR (none when unset);
    raises SettingsError when the folder is missing or one of its tenant folders holds no model."""
    if models_dir is None:
        return {}
    if not models_dir.is_dir():
        raise SettingsError(f"SUPPORTFLOW_INTENT_MODELS_DIR={models_dir} does not exist")
    folders = tenant_folders(models_dir)
    empty = [str(folder) for folder in folders.values() if not (folder / MANIFEST).is_file()]
    if empty:
        raise SettingsError(
            f"SUPPORTFLOW_INTENT_MODELS_DIR={models_dir}: no intent model ({MANIFEST}) in {', '.join(empty)}; "
            "each folder is one tenant's model: `supportflow classifier train --tenant <tenant> --out <folder>`"
        )
    return folders

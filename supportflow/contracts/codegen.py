"""Generate the Python code for `proto/` into this package, or check that what is committed is fresh.

Generated files are committed so that installing Supportflow does not need protoc; CI regenerates
them into a temporary folder and fails when they differ from the committed ones.
"""

from __future__ import annotations

import filecmp
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = Path(__file__).resolve().parent  # supportflow/contracts
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


class StaleContracts(RuntimeError):
    """The committed generated code does not match `proto/`."""


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _run_protoc(out_dir: Path) -> None:
    from grpc_tools import protoc  # only needed by developers and CI, not at run time
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")


def _generated(root: Path) -> dict[str, Path]:
    """Generated files under `root`/supportflow/contracts, by path relative to the package."""
    base = root / "supportflow" / "contracts"
    return {
        str(p.relative_to(base)): p
        for p in base.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def generate() -> list[Path]:
    """Regenerate in place; returns the files written."""
    with tempfile.TemporaryDirectory() as tmp:
        _run_protoc(Path(tmp))
        fresh = _generated(Path(tmp))
        for stale in set(_generated(REPO_ROOT)) - set(fresh):
            (PACKAGE_DIR / stale).unlink()
        written = []
        for rel, src in fresh.items():
            dest = PACKAGE_DIR / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            init = dest.parent / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated contracts, version 1."""\n')
            dest.write_bytes(src.read_bytes())
            written.append(dest)
        return written


def check() -> None:
    """Raise StaleContracts naming every file that differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        _run_protoc(Path(tmp))
        fresh = _generated(Path(tmp))
        committed = _generated(REPO_ROOT)
        problems = [f"missing: {rel}" for rel in sorted(set(fresh) - set(committed))]
        problems += [f"not generated from proto/: {rel}" for rel in sorted(set(committed) - set(fresh))]
        problems += [
            f"stale: {rel}"
            for rel in sorted(set(fresh) & set(committed))
            if not filecmp.cmp(fresh[rel], committed[rel], shallow=False)
        ]
        if problems:
            raise StaleContracts(
                "generated contracts differ from proto/ (run `supportflow proto generate`):\n  "
                + "\n  ".join(problems)
            )

"""Which bench configuration a run used: its folder, its files and one hash over them.

``asab run`` writes :func:`bench_provenance` into ``summary.json`` (``bench_config``) and the
tenant into ``bench.json`` of its folder, so ``asab results`` and ``asab export`` can find the
bench (chemicals, stock solutions, instruments) a record was measured on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

BENCH_JSON = "bench.json"
"""File in a tenant folder naming its bench configuration (:func:`bench_provenance`)."""


def bench_files(folder: Path) -> list[Path]:
    """The files of a bench folder: every regular file directly in ``folder``, sorted by
    name (``bench.toml``, the layout CSVs, stocks, chemicals, demo requests, README ...)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file()), key=lambda p: p.name)


def bench_provenance(bench_file: Path, name: str | None = None) -> dict[str, Any]:
    """The bench configuration ``bench_file`` (a ``bench.toml`` or its folder) as a
    JSON-ready dict.

    Returns:
        ``{"name", "path" (absolute bench.toml), "folder", "files": [{"name", "sha256",
        "bytes"}], "sha256"}``. ``sha256`` is the SHA-256 of the text
        ``"<file sha256>  <file name>\\n"`` per file in name order (code-point order: the
        lines ``sha256sum *`` prints, sorted), so
        ``cd BENCH && sha256sum * | LC_ALL=C sort -k2 | sha256sum`` reproduces it.

    Raises:
        OSError: a file of the folder cannot be read.
    """
    bench_file = Path(bench_file).resolve()
    if bench_file.is_dir():
        bench_file = bench_file / "bench.toml"
    folder = bench_file.parent
    files = []
    for path in bench_files(folder):
        data = path.read_bytes()
        files.append({"name": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                      "bytes": len(data)})
    return {"name": name, "path": str(bench_file), "folder": str(folder), "files": files,
            "sha256": config_hash(files)}


def config_hash(files: list[dict[str, Any]]) -> str:
    """SHA-256 over ``"<sha256>  <name>\\n"`` lines of ``files`` sorted by name."""
    text = "".join(f"{f['sha256']}  {f['name']}\n" for f in sorted(files, key=lambda f: f["name"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_provenance(folder: Path) -> dict[str, Any] | None:
    """The bench provenance a run or tenant folder names: ``summary.json``'s
    ``bench_config``, else ``bench.json``; None when neither names one (older runs)."""
    folder = Path(folder)
    for name, key in (("summary.json", "bench_config"), (BENCH_JSON, None)):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found = data.get(key) if key else data
        if isinstance(found, dict) and found.get("path"):
            return found
    return None

"""The deft home folder (caches of converted models and scores) and cached file digests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from deft_core.sources import atomic_path


def deft_home() -> Path:
    """Return the cache folder: $DEFT_HOME, else $XDG_CACHE_HOME/deft, else ~/.cache/deft."""
    if os.environ.get("DEFT_HOME"):
        home = Path(os.environ["DEFT_HOME"]).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        home = Path(cache) / "deft"
    home.mkdir(parents=True, exist_ok=True)
    return home


def file_digest(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a file, remembered per path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = deft_home() / "digests.json"
    try:
        index = json.loads(index_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        index = {}
    if key in index:
        return index[key]

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    with atomic_path(index_path) as temporary:
        temporary.write_text(json.dumps(index, indent=1))
    return index[key]


def folder_digest(folder: str | os.PathLike) -> str:
    """Return a digest of a model folder's config, tokenizer and weight files."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".model", ".gguf", ".txt"):
            digest.update(f"{path.name}:{file_digest(path)}\n".encode())
    return digest.hexdigest()

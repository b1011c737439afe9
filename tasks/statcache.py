"""Small YAML files read on every run (chartfile.yaml, each chart's Chart.yaml), kept parsed
in ``build/.cache/stat-yaml.json`` keyed by each file's stat (inode, size, mtime and ctime in
nanoseconds): a no-op ``doit`` or ``doit list`` then reads them without importing a YAML
parser. A changed file (any write moves its ctime) is parsed again; a damaged or unwritable
cache is ignored."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import paths

_MEM: dict[str, Any] | None = None


def _file() -> Path:
    return paths.build() / ".cache" / "stat-yaml.json"


def _entries() -> dict:
    global _MEM
    if _MEM is None:
        try:
            _MEM = json.loads(_file().read_text(encoding="utf-8"))
            if not isinstance(_MEM, dict):
                _MEM = {}
        except (OSError, ValueError):
            _MEM = {}
    return _MEM


def load_yaml(path: Path) -> Any:
    """The first YAML document of ``path`` (None when empty). Raises OSError when the file
    cannot be read and ValueError (with YAML's message) when it is not YAML."""
    st = os.stat(path)
    key = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    entries = _entries()
    hit = entries.get(str(path))
    if isinstance(hit, dict) and hit.get("stat") == key:
        return hit.get("data")
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None
    try:
        if json.loads(json.dumps(data, allow_nan=False)) == data:
            from . import atomic

            entries[str(path)] = {"stat": key, "data": data}
            atomic.write_text(_file(), json.dumps(entries))
    except (TypeError, ValueError, OSError):
        pass  # not JSON-exact, or a read-only build/: parsed each time
    return data

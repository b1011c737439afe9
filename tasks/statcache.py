"""Small YAML files read on every run (chartfile.yaml, each chart's Chart.yaml), kept parsed
in ``build/.cache/stat-yaml.json`` keyed by each file's stat (inode, size, mtime and ctime in
nanoseconds): a no-op ``doit`` or ``doit list`` then reads them without importing a YAML
parser. A changed file is parsed again; a damaged or unwritable cache is ignored.

A write moves the file's times only to the filesystem's timestamp tick (a few milliseconds, a
second or two on some filesystems): a same-size rewrite within the tick of the read leaves
every stat field as it was. So a file is kept only once it is :func:`settled`."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import paths

#: cache file -> its entries, read once per process
_MEM: dict[Path, dict] = {}


def _file() -> Path:
    return paths.build() / ".cache" / "stat-yaml.json"


#: longer than any filesystem's timestamp tick (FAT's is two seconds)
TICK_NS = 2_000_000_000


def settled(st: os.stat_result) -> bool:
    """Whether the file of ``st`` was last modified more than a timestamp tick ago, so that
    any later write moves its modification time: only then may a cache trust its stat."""
    return time.time_ns() - st.st_mtime_ns > TICK_NS


def _entries(cache: Path) -> dict:
    if cache not in _MEM:
        try:
            entries = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            entries = {}
        _MEM[cache] = entries if isinstance(entries, dict) else {}
    return _MEM[cache]


def _store(cache: Path, entries: dict) -> None:
    """Best effort, all or nothing (a cache: not flushed to disk)."""
    from . import atomic  # on a miss only: a no-op run reads the cache

    atomic.write_text(cache, json.dumps(entries), durable=False)


def load_yaml(path: Path, keep: bool = True) -> Any:
    """The first YAML document of ``path`` (None when empty). Raises OSError when the file
    cannot be read and ValueError (with YAML's message) when it is not YAML. With ``keep``
    False the cache is neither read nor written (a file whose entry would never be read)."""
    st = os.stat(path)
    key = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    cache = _file()
    entries = _entries(cache) if keep else {}
    hit = entries.get(str(path))
    if isinstance(hit, dict) and hit.get("stat") == key and "data" in hit:
        return hit.get("data")
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None
    try:  # kept only where build output already is: a first `doit list` leaves nothing behind
        keep = keep and settled(st) and paths.build().is_dir()
        if keep and json.loads(json.dumps(data, allow_nan=False)) == data:
            entries[str(path)] = {"stat": key, "data": data}
            _store(cache, entries)
    except (TypeError, ValueError, OSError, RecursionError):
        pass  # not JSON-exact, or a read-only build/: parsed each time
    return data

"""Pinned CRDs: the KEDA and Flux CustomResourceDefinitions, from their Go modules.

``tools/crds/go.mod`` pins the Go modules whose ``config/crd/bases/*.yaml`` are the
CRDs (KEDA's and each Flux controller's, at the versions the pinned charts ship or the
nearest the module proxy serves: ``tools/crds/README.md``); ``go.sum`` holds their
checksums. ``doit crds`` runs ``go mod download -json`` on a temporary copy of that
module (the Go module cache makes it offline after the first run; go verifies every
module against go.sum) and copies each module's CRDs into ``build/crds/<name>/``.

The output is replaced atomically and ``build/crds/crds.json`` (written inside it)
records the digest of go.mod and go.sum it came from: a run interrupted half way leaves
the previous complete set, and a changed pin makes the task run again. The CRDs'
schemas, parsed, are kept with them (``schemas.json``, see ``manifests.crd_dir_index``).

``validate:*`` checks custom resources against these CRDs (and against those in the
render); the tests give them to the stand-in charts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import atomic, paths, tools

#: where a module keeps its generated CRDs (kubebuilder's layout, used by KEDA and Flux)
BASES = "config/crd/bases"


def pin_dir() -> Path:
    """The Go module that pins the CRD modules (``tools/crds``)."""
    return paths.root() / "tools" / "crds"


def crd_dir() -> Path:
    """The fetched CRDs (``build/crds``, gitignored)."""
    return paths.build() / "crds"


def index_file(dest: Path | None = None) -> Path:
    return (dest or crd_dir()) / "crds.json"


def module_name(module_path: str) -> str:
    """``github.com/kedacore/keda/v2`` -> ``keda``; ``github.com/fluxcd/source-controller``
    -> ``source-controller``: the directory under build/crds/."""
    parts = module_path.split("/")
    if re.fullmatch(r"v\d+", parts[-1]):
        parts = parts[:-1]
    return parts[-1]


def pins(pin: Path | None = None) -> dict[str, str]:
    """``module path -> version`` of tools/crds/go.mod, as ``go mod edit -json`` reads it."""
    gomod = (pin or pin_dir()) / "go.mod"
    proc = subprocess.run(["go", "mod", "edit", "-json", str(gomod)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise FetchError(f"{paths.rel(gomod)} is not a valid go.mod:\n{proc.stderr.strip()}")
    return {r["Path"]: r["Version"] for r in json.loads(proc.stdout).get("Require") or []}


def pins_digest(pin: Path | None = None) -> str:
    """sha256 of go.mod and go.sum: what the fetched CRDs are keyed on."""
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update(name.encode() + b"\0" + ((pin or pin_dir()) / name).read_bytes() + b"\0")
    return h.hexdigest()


class FetchError(Exception):
    """A CRD module could not be downloaded or has no CRDs; the message says what to do."""


def _json_stream(text: str) -> list[dict]:
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def download(pin: Path, dest: Path) -> dict:
    """Download the pinned modules (``go mod download``) and copy their CRDs into ``dest``
    (replaced atomically); returns the index written to ``dest/crds.json``."""
    wanted = pins(pin)
    if not wanted:
        raise FetchError(f"{paths.rel(pin / 'go.mod')} requires no module: nothing to fetch")
    with tempfile.TemporaryDirectory(prefix="crd-pins-") as tmp:
        # a copy, so go never edits the tracked go.mod/go.sum
        for name in ("go.mod", "go.sum"):
            shutil.copyfile(pin / name, Path(tmp) / name)
        env = dict(os.environ)
        env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
        proc = subprocess.run(["go", "mod", "download", "-json"], cwd=tmp, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        found = _json_stream(proc.stdout)
    except ValueError:
        found = []
    errors = [f"  {m.get('Path')}@{m.get('Version')}: {m['Error']}" for m in found if m.get("Error")]
    if proc.returncode != 0 or errors or not found:
        detail = "\n".join(errors) or (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise FetchError(
            f"`go mod download` of the CRD modules ({paths.rel(pin / 'go.mod')}) failed:\n{detail}\n"
            "The first run needs the Go module proxy (GOPROXY); later runs use the Go module "
            "cache. A version the proxy refuses must be re-pinned (see tools/crds/README.md).")
    dirs = {m["Path"]: Path(m["Dir"]) for m in found if m.get("Dir")}
    missing = sorted(set(wanted) - set(dirs))
    if missing:
        raise FetchError(f"`go mod download` did not return {', '.join(missing)}")
    index = {"pins": pins_digest(pin), "modules": []}
    dest = Path(dest)
    for stale in dest.parent.glob(f".{dest.name}.*"):  # left by a killed run (replace_dir's temps)
        if stale.is_dir() and (stale.name.endswith(".tmp") or ".old." in stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    with atomic.replace_dir(dest) as out:
        for path in sorted(wanted):
            name = module_name(path)
            sources = sorted((dirs[path] / BASES).glob("*.yaml"))
            if not sources:
                raise FetchError(f"{path}@{wanted[path]} has no {BASES}/*.yaml: pin a version that ships its CRDs")
            (out / name).mkdir()
            for src in sources:
                target = out / name / src.name
                shutil.copyfile(src, target)  # the module cache is read-only: copy the bytes only
                target.chmod(0o644)
            index["modules"].append({"path": path, "version": wanted[path], "name": name,
                                     "files": [f"{name}/{s.name}" for s in sources]})
        (out / "crds.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        from .manifests import crd_dir_index

        crd_dir_index(out)  # their schemas compiled once, for every validate:<env>
    return index


def fetched(dest: Path | None = None, pin: Path | None = None) -> bool:
    """True when ``dest`` holds the complete CRDs of the current pins."""
    dest = dest or crd_dir()
    try:
        index = json.loads(index_file(dest).read_text())
        return (index["pins"] == pins_digest(pin)
                and all((dest / f).is_file() for m in index["modules"] for f in m["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _fetch_action():
    from doit.exceptions import TaskFailed

    try:
        index = download(pin_dir(), crd_dir())
    except FetchError as e:
        return TaskFailed(str(e))
    count = sum(len(m["files"]) for m in index["modules"])
    mods = ", ".join(f"{m['name']} {m['version']}" for m in index["modules"])
    print(f"crds: {count} CRDs from {len(index['modules'])} modules ({mods}) in {paths.rel(crd_dir())}/")
    return None


def task_crds():
    """Fetch the pinned KEDA and Flux CRDs (tools/crds/go.mod) into build/crds/ with `go mod download`."""
    return tools.needs({
        "actions": [_fetch_action],
        "file_dep": [str(pin_dir() / "go.mod"), str(pin_dir() / "go.sum")],
        "targets": [str(index_file())],
        "uptodate": [lambda: fetched()],
        "verbosity": 1,
    }, "go")

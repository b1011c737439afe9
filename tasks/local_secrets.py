"""``secrets:local``: the local environment's secrets, generated once per machine (random,
0600, gitignored), never changed once made."""
from __future__ import annotations

import json
from pathlib import Path

from doit.exceptions import TaskFailed

from . import atomic, paths
from .kube import LOCAL_ENV
from .tanka import env_dir


def local_secrets_file() -> Path:
    """The generated, gitignored secrets the local render reads."""
    return env_dir(LOCAL_ENV) / "secrets.local.json"


def secret_keys_file() -> Path:
    """The keys of the local secrets (shared with tanka/lib/raibid/secrets.libsonnet)."""
    return paths.tanka() / "lib" / "raibid" / "secret-keys.json"


def local_secret_keys() -> list[str]:
    return json.loads(secret_keys_file().read_text())


def _generate_value(key: str) -> str:
    import secrets

    if key == "giteaAdminUsername":
        return "raibid-admin-" + secrets.token_hex(3)
    return secrets.token_urlsafe(32)


def local_secrets_complete() -> bool:
    try:
        values = json.loads(local_secrets_file().read_text())
        return all(isinstance(values.get(k), str) and values[k] for k in local_secret_keys())
    except (OSError, ValueError):
        return False


def generate_local_secrets():
    """Create or complete the local secrets file; never changes an existing value.

    The file is 0600 from its creation; concurrent runs take turns (a lock on its
    directory), so only the first generates and the others find the file complete."""
    f = local_secrets_file()
    with atomic.locked(f.parent):
        try:
            values = json.loads(f.read_text()) if f.exists() else {}
        except ValueError:
            values = None
        if not isinstance(values, dict):
            return TaskFailed(f"{paths.rel(f)} is not a JSON object: fix or delete it, then run "
                              "`doit secrets:local` again")
        added = [k for k in local_secret_keys() if not (isinstance(values.get(k), str) and values[k])]
        for k in added:
            values[k] = _generate_value(k)
        if added or f.stat().st_mode & 0o077:
            atomic.write_text(f, json.dumps(values, indent=2, sort_keys=True) + "\n", mode=0o600)
    print(f"{paths.rel(f)}: {'generated ' + ', '.join(added) if added else 'complete'} "
          "(random, this machine only, gitignored)")
    return None


def task_secrets():
    """Generate the local environment's secrets once per machine (random, gitignored)."""
    yield {
        "name": "local",
        "doc": "Generate random local secrets into tanka/environments/local/secrets.local.json (gitignored)",
        "actions": [generate_local_secrets],
        "file_dep": [str(secret_keys_file())],
        "targets": [str(local_secrets_file())],
        "uptodate": [local_secrets_complete],
        "verbosity": 1,
    }

"""``secrets:<env>``: the secrets of the environment of kind ``local`` (deploy.json),
generated once per machine (random, 0600, gitignored), never changed once made. Remote
environments reference Secrets an operator created in their cluster: none is generated."""
from __future__ import annotations

import json
from pathlib import Path

from doit.exceptions import TaskFailed

from . import atomic, kube, paths
from .tanka import env_dir


def local_secrets_file(env: str | None = None) -> Path:
    """The generated, gitignored secrets the local environment's render reads."""
    return env_dir(env or kube.local_env() or "local") / "secrets.local.json"


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


def local_secrets_complete(env: str | None = None) -> bool:
    """The file holds every key and is owner-only (one left readable by others, by an older
    version or a copy, makes the task run again: it sets the mode to 0600)."""
    f = local_secrets_file(env)
    try:
        if f.stat().st_mode & 0o077:
            return False
        values = json.loads(f.read_text())
        return isinstance(values, dict) and all(isinstance(values.get(k), str) and values[k]
                                                for k in local_secret_keys())
    except (OSError, ValueError):
        return False


def generate_local_secrets(env: str | None = None) -> None:
    """Create or complete the local secrets file; never changes an existing value.

    The file is 0600 from its creation; concurrent runs take turns (a lock on its
    directory), so only the first generates and the others find the file complete."""
    f = local_secrets_file(env)
    with atomic.locked(f.parent):
        try:
            values = json.loads(f.read_text()) if f.exists() else {}
        except ValueError:
            values = None
        if not isinstance(values, dict):
            return TaskFailed(f"{paths.rel(f)} is not a JSON object: fix or delete it, then run "
                              f"`doit secrets:{env or kube.local_env()}` again")
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
    env = kube.local_env()
    if env is None:
        return
    f = local_secrets_file(env)
    yield {
        "name": env,
        "doc": f"Generate random local secrets into {paths.rel(f)} (gitignored)",
        "actions": [(generate_local_secrets, [env])],
        "file_dep": [str(secret_keys_file())],
        "targets": [str(f)],
        "uptodate": [lambda: local_secrets_complete(env)],
        "verbosity": 1,
    }

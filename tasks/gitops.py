"""GitOps: ``publish:<env>`` writes an environment's validated render to the Git
repository Flux watches.

The render says where (tanka/lib/raibid/flux.libsonnet): its Flux ``GitRepository``
carries the annotations ``raibid.dev/publish-path`` (the directory, e.g.
``environments/staging``) and ``raibid.dev/push-url`` (the repository as seen from
outside the cluster: Gitea's ROOT_URL); ``RAIBID_GITOPS_URL`` overrides the push URL
(e.g. a port-forward, or ``file:///...``). The Flux ``Kustomization`` applies that
directory; ``validate:<env>`` checks that it does (the ``gitops`` policy, which uses
:func:`published_dirs`).

The published directory holds the rendered files and a ``kustomization.yaml`` listing
them, so ``kubectl kustomize <dir>`` (and Flux) build exactly the render, each object in
the namespace it was rendered with; the Flux Kustomization changes nothing of it (no
``targetNamespace``, patches or substitutions: :data:`FLUX_TRANSFORMS`, which the
``gitops`` policy refuses), so Flux applies what ``apply:<env>`` applies. Publishing
clones the branch into a temporary directory under build/publish/, replaces that directory,
and commits and pushes only when something changed; the push is Git's own atomic ref update,
so an interrupted publish leaves the repository as it was. A render that contains Secrets
made from local secret values (``secrets:local``) is never published.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from . import paths, tools
from .problems import redact

PUBLISH_PATH = "raibid.dev/publish-path"
PUSH_URL = "raibid.dev/push-url"
#: overrides the push URL of the render's GitRepository
URL_ENV = "RAIBID_GITOPS_URL"
#: objects of our secrets library (tanka/lib/raibid/secrets.libsonnet labels them so)
SECRETS_COMPONENT = ("app.kubernetes.io/component", "secrets")
KUSTOMIZATION = "kustomization.yaml"
#: the fields of a Flux Kustomization's spec that change what it applies from the published
#: tree (kustomize-controller's own overlay, and its variable substitution after the build)
FLUX_TRANSFORMS = ("targetNamespace", "namePrefix", "nameSuffix", "commonMetadata", "patches",
                   "patchesStrategicMerge", "patchesJson6902", "images", "components", "postBuild")


class PublishError(Exception):
    """Publishing is impossible or failed; the message says why and what to do (never the
    credentials of a push URL, nor of one git's output echoes)."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def normalize(path: str) -> str:
    """A repository path as Flux reads it: ``./environments/x/`` -> ``environments/x``."""
    p = posixpath.normpath(str(path).strip() or ".")
    return p[2:] if p.startswith("./") else p


def _valid(path: str) -> bool:
    return path not in (".", "") and not path.startswith(("/", "../")) and path != ".."


def published_dirs(objs: list[dict]) -> dict[tuple[str, str, str], str]:
    """``(namespace, "GitRepository", name) -> directory`` for every GitRepository of the
    render that ``publish:<env>`` writes to (a valid ``raibid.dev/publish-path``)."""
    out = {}
    for o in objs:
        meta = o.get("metadata") or {}
        path = (meta.get("annotations") or {}).get(PUBLISH_PATH)
        if o.get("kind") == "GitRepository" and path is not None and _valid(normalize(path)):
            out[(meta.get("namespace", ""), "GitRepository", meta.get("name"))] = normalize(path)
    return out


def target(objs: list[dict]) -> tuple[dict, str]:
    """The one GitRepository to publish to, and the directory."""
    repos = [o for o in objs if o.get("kind") == "GitRepository"
             and PUBLISH_PATH in ((o.get("metadata") or {}).get("annotations") or {})]
    if len(repos) != 1:
        raise PublishError(f"the render has {len(repos)} GitRepository objects with the {PUBLISH_PATH} "
                           "annotation; publish needs exactly one (tanka/lib/raibid/flux.libsonnet)")
    path = normalize(repos[0]["metadata"]["annotations"][PUBLISH_PATH])
    if not _valid(path):
        raise PublishError(f"{PUBLISH_PATH} {path!r} must be a directory inside the repository")
    return repos[0], path


def local_secrets(objs: list[dict]) -> list[str]:
    """Secrets the render made from secret values (never published)."""
    key, value = SECRETS_COMPONENT
    return [o["metadata"]["name"] for o in objs if o.get("kind") == "Secret"
            and ((o.get("metadata") or {}).get("labels") or {}).get(key) == value]


def tree(render_dir: Path, path: str) -> dict[str, bytes]:
    """What ``publish`` writes: ``{repository path: content}`` (the render's YAML files
    under ``path`` and a kustomization.yaml listing them)."""
    files = sorted(p for p in Path(render_dir).rglob("*.yaml") if p.is_file())
    out = {f"{path}/{p.relative_to(render_dir).as_posix()}": p.read_bytes() for p in files}
    listing = "".join(f"- {p.relative_to(render_dir).as_posix()}\n" for p in files)
    out[f"{path}/{KUSTOMIZATION}"] = (
        "# Published by raibid-deploy (`doit publish:<env>`) from the validated render: do not edit.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" + listing).encode()
    return out


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise PublishError(f"`git {' '.join(args[:2])}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def clones() -> Path:
    """Where publish clones the GitOps repository: under build/, never /tmp (a killed publish
    leaves its clone there, and the next publish removes it)."""
    return paths.build() / "publish"


@contextlib.contextmanager
def _clone_dir() -> Iterator[Path]:
    """An empty directory for one publish's clone, removed afterwards. Publishes of a checkout
    take turns (a lock on :func:`clones`), so whatever else is there was left by a publish that
    was killed (SIGKILL runs no ``finally``): removed first."""
    from . import atomic

    atomic.private_dir(clones())
    with atomic.locked(clones()):
        for stale in clones().iterdir():
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="gitops-", dir=clones()) as tmp:
            yield Path(tmp)


def publish(render_dir: Path, objs: list[dict], url: str | None, message: str) -> tuple[bool, str]:
    """Publish ``render_dir`` to the render's GitOps repository; ``(changed, commit)``."""
    repo, path = target(objs)
    secrets = local_secrets(objs)
    if secrets:
        raise PublishError(f"the render contains Secrets made from secret values ({', '.join(secrets)}): "
                           "they are never written to Git. Publish an environment whose Secrets are "
                           "created in the cluster (tanka/README.md, \"Secrets\")")
    url = url or ((repo["metadata"].get("annotations") or {}).get(PUSH_URL))
    if not url:
        raise PublishError(f"no push URL: set {URL_ENV} or the {PUSH_URL} annotation")
    branch = ((repo.get("spec") or {}).get("ref") or {}).get("branch") or "main"
    remote = _git("ls-remote", "--heads", url, f"refs/heads/{branch}", check=False)
    if remote.returncode != 0:
        raise PublishError(f"cannot reach the GitOps repository {url}: {remote.stderr.strip()}\n"
                           f"Create it (e.g. {repo['metadata']['name']} in Gitea) or set {URL_ENV}")
    with _clone_dir() as tmp:
        work = tmp / "work"
        _git("init", "-q", "-b", branch, str(work))
        if remote.stdout.strip():
            _git("fetch", "-q", "--depth", "1", url, f"refs/heads/{branch}", cwd=work)
            _git("checkout", "-q", "-B", branch, "FETCH_HEAD", cwd=work)
        shutil.rmtree(work / path, ignore_errors=True)
        for rel, data in tree(render_dir, path).items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        _git("add", "-A", "--", path, cwd=work)
        if _git("diff", "--cached", "--quiet", cwd=work, check=False).returncode == 0:
            return False, _git("rev-parse", "HEAD", cwd=work).stdout.strip()
        _git("-c", "user.name=raibid-deploy", "-c", "user.email=raibid-deploy@localhost",
             "commit", "-q", "-m", message, cwd=work)
        push = _git("push", "-q", url, f"HEAD:refs/heads/{branch}", cwd=work, check=False)
        if push.returncode != 0:
            raise PublishError(f"push to {url} ({branch}) was refused: {push.stderr.strip()}\n"
                               "If someone else published meanwhile, run the task again.")
        return True, _git("rev-parse", "HEAD", cwd=work).stdout.strip()


def _publish_action(env: str):
    from doit.exceptions import TaskFailed

    from . import manifests, render, tanka

    directory = tanka.manifests_dir(env)
    if not directory.is_dir():
        return TaskFailed(f"{paths.rel(directory)} does not exist: run `doit validate:{env}`")
    edited = render.changed_since_render(env)  # publish only what validate checked
    if edited:
        return TaskFailed(f"publish:{env}: {edited}")
    objs = [o for _, o in manifests.load_dir(directory)]
    digest = tanka.read_digest(env) or "unknown"
    try:
        changed, commit = publish(directory, objs, os.environ.get(URL_ENV),
                                  f"{env}: render {digest[:12]} (raibid-deploy publish:{env})")
    except PublishError as e:
        return TaskFailed(f"publish:{env}: {e}")
    where = target(objs)[1]
    print(f"publish:{env}: {'published' if changed else 'unchanged, nothing pushed'}: "
          f"{where}/ at commit {commit[:12]}")
    return None


def task_publish():
    """Publish an environment's validated render to the GitOps repository Flux applies."""
    from doit.tools import config_changed

    from . import settings as deploy_settings, tanka
    from .deploy import confirmation

    for env in deploy_settings.current_or_exit().environments:
        # Flux applies (and prunes) what is pushed: the same --yes as apply:<env>
        params, confirm = confirmation(env, "publish")
        yield tools.needs({
            "name": env,
            "doc": f"Commit and push build/manifests/{env}/ to the GitOps repository Flux watches "
                   f"(only when the render changed; {URL_ENV} overrides the push URL)"
                   f"{'; needs --yes' if confirm else ''}",
            "actions": [*confirm, (_publish_action, [env])],
            "params": params,
            "file_dep": [str(tanka.digest_file(env))],
            "task_dep": [f"validate:{env}"],
            "uptodate": [config_changed({"url": os.environ.get(URL_ENV, "")})],
            "verbosity": 2,
        }, "git")

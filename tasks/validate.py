"""``validate:<env>``: a render checked offline against the Kubernetes schemas, the CRD
schemas and the policies (tasks/manifests.py), then by the API server's dry-run when the
control plane is installed (tasks/controlplane.py).

``validate:<env>`` runs when the render's digest, the pinned CRDs (``doit crds``), the
checks or kubernetes-validate's schemas changed. render:<env> runs first and keeps the
directory what it wrote (its digest), and validate checks that again before it reads it.
"""
from __future__ import annotations

from doit.exceptions import TaskFailed

from . import core, paths
from .tanka import digest_file, manifests_dir


def _validate_action(env: str, k8s_version: str):
    from . import crds, manifests

    directory = manifests_dir(env)
    if not directory.is_dir():
        return TaskFailed(f"{paths.rel(directory)} does not exist: run `doit render:{env}`")
    from .render import changed_since_render

    changed = changed_since_render(env)  # validate checks only what render wrote
    if changed:
        return TaskFailed(f"validate:{env}: {changed}")
    try:
        count, violations = manifests.validate_dir(directory, env, k8s_version, crds.crd_dir())
    except manifests.UnsupportedVersion as e:
        return TaskFailed(f"validate:{env}: {e}")
    if violations:
        lines = "\n".join(f"  {v}" for v in violations)
        return TaskFailed(f"validate:{env}: {len(violations)} violation(s) in {count} objects "
                          f"({paths.rel(directory)}/):\n{lines}")
    print(f"validate:{env}: {count} objects valid (Kubernetes {k8s_version} schemas, CRDs, policies)")
    from . import controlplane  # the server-side dry-run, when a control plane is running

    problem, note = controlplane.server_dry_run(env, directory)
    if problem:
        return TaskFailed(problem)
    import sys

    # shown even when the task's output is not; why it was skipped reads the same for every
    # environment, so a run says it once
    if not note.startswith(controlplane.DRY_RUN_SKIPPED):
        print(f"validate:{env}: {note}", file=sys.stderr)
    elif note not in SAID:
        SAID.add(note)
        print(f"validate: {note}", file=sys.stderr)
    return None


#: the skipped dry-run notes this process has printed
SAID: set[str] = set()


def task_validate():
    """Validate a rendered environment: Kubernetes schemas, CRD schemas and policies."""
    from doit.tools import config_changed

    from pathlib import Path

    from . import controlplane, crds, gitops
    from .settings import kubernetes_schema_stamp

    checks = str(Path(__file__).with_name("manifests.py"))  # named without importing it
    # asked once per load (not per environment): whether validate dry-runs server-side
    dry_run = controlplane.tools_present() and controlplane.running_dir(probe=False) is not None
    settings = core.settings()
    version = settings.kubernetes_version
    schemas = kubernetes_schema_stamp(version)  # an upgraded kubernetes-validate checks anew
    for env in settings.environments:
        yield {
            "name": env,
            "doc": f"Validate build/manifests/{env}/ against Kubernetes {version}, the CRDs and the policies",
            "actions": [(_validate_action, [env, version])],
            # the pinned CRDs (build/crds/crds.json, target of `doit crds`)
            "file_dep": [str(digest_file(env)), checks, gitops.__file__, str(crds.index_file())],
            "uptodate": [config_changed({"kubernetes_version": version, "strict": True, "schemas": schemas,
                                         "image_policy": settings.env(env).image_policy,
                                         "server_dry_run": dry_run})],
            "verbosity": 1,
        }

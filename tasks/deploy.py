"""``diff:<env>`` and ``apply:<env>``: what an environment deploys (its render and the
pushed image refs) and deploying it.

``apply:<env>`` asks the cluster: it is up to date only while the ConfigMap
``raibid-deploy-applied`` in the namespace holds the digest of the rendered manifests
and the image references, so a recreated cluster is deployed again. It applies the
validated render (for the environment of kind ``local``, once ``push:<name>`` pushed
images to the k3d registry, with their refs in place of its ``raibid-<name>`` images)
server-side, with the field
manager ``raibid-deploy``: no last-applied annotation (a large CRD does not fit in
one), CRDs and Namespaces first and Established before the objects that need them, the
rest dry-run first (an object the server rejects leaves it all unapplied), each object in
its own namespace, and a second apply of the same objects changes nothing. The record is
deleted before and written after: an apply that fails half way leaves none. ``diff:<env>``
asks the server the same way (``kubectl diff --server-side``), listing what the apply
would create first.
"""
from __future__ import annotations

import hashlib
import json

from doit.exceptions import TaskFailed

from . import core, docker, paths, tools
from .kube import (APPLIED_CONFIGMAP, FIELD_MANAGER, access_problem, applied_digest,
                   check_context, context_of, context_problem, diff_objects, forget_applied,
                   is_local, kubectl_argv, namespace_of, record_applied, server_side_apply)
from .render import changed_since_render, rendered_objects
from .tanka import manifests_dir, read_digest


def image_overrides(env: str) -> dict[str, str]:
    """The image refs ``env`` deploys instead of its render's: for the environment of kind
    ``local`` (deploy.json: its images are built and pushed to the k3d registry) the ref
    ``push:<name>`` recorded for each image of docker/ (build/images/<name>.cluster.json:
    {"name", "ref"}; the record of an image whose Dockerfile is gone is not one of them);
    none for a remote one, which deploys the images its render names (its cluster cannot
    pull from this machine's registry)."""
    if not is_local(env):
        return {}
    out = {}
    for name in docker.images():
        ref = (docker.read_json(docker.cluster_record_path(name)) or {}).get("ref")
        if ref:
            out[name] = str(ref)
    return out


def deploy_digest(env: str) -> str:
    """What apply:<env> deploys: the rendered manifests' digest and the image refs."""
    rendered = read_digest(env) or "not-rendered"
    payload = json.dumps({"env": env, "manifests": rendered, "images": image_overrides(env)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _applied_uptodate(env: str):
    def check(task, values):
        """True when the cluster's ConfigMap raibid-deploy-applied holds the digest of this
        render and its image refs (asked live: a recreated cluster holds none)."""
        return applied_digest(env) == deploy_digest(env)

    return check


def needs_confirmation(env: str) -> bool:
    """apply:<env> and publish:<env> (Flux applies what it pushes) ask for ``--yes`` first
    (deploy.json ``confirm_apply``)."""
    return core.settings().env(env).confirm_apply


def confirm_action(env: str, task: str):
    """doit action of ``<task>:<env>`` (with its ``--yes`` parameter): refuse without it."""

    def confirm(yes):
        if not yes:
            return TaskFailed(f"refusing to {task} {env} without confirmation "
                              f"(deploy.json confirm_apply): run `doit {task}:{env} --yes`")
        return None

    return confirm


def confirmation(env: str, task: str) -> tuple[list[dict], list]:
    """The ``--yes`` parameter and the first action of ``<task>:<env>``, a task that changes
    the environment's cluster (apply, publish), when :func:`needs_confirmation`; none else."""
    if not needs_confirmation(env):
        return [], []
    params = [{"name": "yes", "long": "yes", "type": bool, "default": False,
               "help": f"confirm {task}:{env} (deploy.json confirm_apply)"}]
    return params, [confirm_action(env, task)]


def deploy_objects(env: str) -> list[dict] | TaskFailed:
    """What apply:<env> deploys: the objects of the render (build/manifests/<env>/, which
    apply's validate dependency keeps current), with :func:`image_overrides` in place."""
    objects = rendered_objects(manifests_dir(env))
    images = image_overrides(env)
    return with_images(objects, images, env) if images else objects


def with_images(objects: list[dict], images: dict[str, str], env: str) -> list[dict] | TaskFailed:
    """``objects`` with every container image of repository ``raibid-<name>`` (the render's
    own images, as config.libsonnet's ``defaults.images`` names them and Tilt finds them)
    replaced by ``images[name]``, whatever its tag: the objects ``tk show`` gives with
    ``--tla-code images=...``, without rendering again (and without another render than
    the one validate checked). A TaskFailed names a pushed image no container runs."""
    import copy

    from .manifests import containers, image_parts, pod_spec

    wanted = {docker.repository(name): ref for name, ref in images.items()}
    used: set[str] = set()
    out = []
    for obj in objects:
        if pod_spec(obj) is not None:
            obj = copy.deepcopy(obj)  # the render's objects stay as validate read them
            for c, _ in containers(pod_spec(obj)):
                repo = image_parts(str(c.get("image") or ""))[0]
                if repo in wanted:
                    c["image"] = wanted[repo]
                    used.add(repo)
        out.append(obj)
    unused = sorted(name for name in images if docker.repository(name) not in used)
    if unused:
        return TaskFailed(
            f"{env}: no container of {paths.rel(manifests_dir(env))}/ runs "
            f"{', '.join(docker.repository(n) for n in unused)}, though push:{unused[0]} pushed it: give "
            f"{unused[0]} its default '{docker.repository(unused[0])}:dev' in tanka/lib/raibid/config.libsonnet "
            f"defaults.images and use cfg.images.{unused[0]} in a component (CONTRIBUTING.md, \"Add an image\")")
    return out


def _apply_action(env: str):
    changed = changed_since_render(env)  # apply only what validate checked
    if changed:
        return TaskFailed(f"apply:{env}: {changed}")
    objects = deploy_objects(env)
    if isinstance(objects, TaskFailed):
        return objects
    # forget first, record after (as `down` does): an apply that fails, or is killed, half
    # way leaves no record saying the cluster holds an earlier render (the next apply of
    # that render would trust it and apply nothing)
    if not forget_applied(env, quiet=True):
        problem = access_problem(env, "applied") or (
            f"deleting the applied record ({APPLIED_CONFIGMAP}) failed, so nothing was applied")
        return TaskFailed(f"apply:{env}: {problem}")
    kubectl = kubectl_argv(context_of(env))
    ok, output = server_side_apply(kubectl, objects, namespace_of(env))
    problem = None if ok else access_problem(env, "applied", output)
    if problem:  # kubectl's own words (a --validate=false hint) would point the wrong way
        return TaskFailed(f"apply:{env}: {problem}")
    print(output)
    if not ok:
        return TaskFailed(f"apply:{env}: the server-side apply failed (see above); nothing was recorded, "
                          f"so the next `doit apply:{env}` applies again. `doit diff:{env}` shows what would change.")
    digest = deploy_digest(env)
    problem = record_applied(env, digest, image_overrides(env))
    if problem is not None:
        return TaskFailed(f"applied, but recording {APPLIED_CONFIGMAP} failed (the next apply will run "
                          f"again):\n{problem}")
    print(f"apply:{env}: {len(objects)} objects applied server-side (field manager {FIELD_MANAGER}); "
          f"recorded digest {digest[:12]} in ConfigMap {APPLIED_CONFIGMAP}")
    return None


def _diff_action(env: str):
    objects = deploy_objects(env)
    if isinstance(objects, TaskFailed):
        return objects
    code, text = diff_objects(kubectl_argv(context_of(env)), objects, namespace_of(env))
    if code > 1:
        problem = access_problem(env, "diffed", text)
        asked = f"asking the cluster (context {context_of(env)!r}) failed"
        return TaskFailed(f"diff:{env}: {problem}" if problem else f"diff:{env}: {asked}:\n{text}")
    if code == 1:
        print(text)
        print(f"diff:{env}: the cluster differs from the render (see above); `doit apply:{env}` applies it")
        return None
    print(f"diff:{env}: no differences")
    return None


def task_context():
    """Check that an environment's kube context is in your kubeconfig (diff and apply ask first, before rendering)."""
    verb = "rendered, diffed or applied"  # what a missing context stopped
    for env in core.environments():
        yield tools.needs({
            "name": env,
            "doc": f"Check that the kube context of {env} is in your kubeconfig (diff:{env} and apply:{env} "
                   f"ask it before vendoring, rendering or validating)",
            "actions": [check_context(env, verb)],
            # up to date while the context is there: asked live, then nothing to run
            "uptodate": [lambda task, values, _env=env: context_problem(_env, verb) is None],
            "verbosity": 1,
        }, "kubectl")


def task_diff():
    """Show what applying an environment would change in its cluster (server-side `kubectl diff`)."""
    for env in core.environments():
        yield tools.needs({
            "name": env,
            "doc": f"Diff the {env} environment against its cluster (server-side, as apply:{env} applies; needs a cluster)",
            "actions": [(_diff_action, [env])],
            "task_dep": [f"context:{env}", f"validate:{env}"],  # in this order: the context first
            "uptodate": [False],
            "verbosity": 2,
        }, "tk", "helm", "kubectl")


def task_apply():
    """Deploy an environment to its cluster: server-side apply, CRDs first (confirm_apply ones need --yes)."""
    for env in core.environments():
        params, confirm = confirmation(env, "apply")
        actions = [*confirm, (_apply_action, [env])]
        yield tools.needs({
            "name": env,
            "doc": (f"Apply the {env} environment server-side, CRDs first (up to date while the cluster holds "
                    f"its digest){'; needs --yes' if confirm else ''}"),
            "actions": actions,
            "params": params,
            "task_dep": [f"context:{env}", f"validate:{env}"],  # in this order: the context first
            "uptodate": [_applied_uptodate(env)],
            "verbosity": 2,
        }, "tk", "helm", "kubectl")

"""publish:<env> against a real Git server: a bare repository over file://, and the
published tree built by the real `kubectl kustomize` (kustomize v5). Each test publishes
from its own copy of the session's rendered stack (conftest.py: stack, stack_copy)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from support import env_for, run_doit, tool_or_fail, yaml_docs


def _git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _executed(proc) -> list[str]:
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]


@pytest.fixture
def server(tmp_path) -> tuple[Path, str]:
    tool_or_fail("git")
    bare = tmp_path / "raibid-gitops.git"
    _git("init", "-q", "--bare", str(bare))
    return bare, f"file://{bare}"


def _objects(texts) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for t in texts for d in yaml_docs(t))


def flux_build(kubectl: str, published: Path, spec: dict, work: Path) -> str:
    """What Flux's kustomize-controller applies from ``published`` for a Kustomization with
    ``spec``: it writes the spec's targetNamespace, namePrefix and nameSuffix into the
    directory's kustomization.yaml (as ``namespace``, ...) and builds it with kustomize."""
    from tasks.gitops import FLUX_TRANSFORMS

    import shutil

    emulated = {"targetNamespace": "namespace", "namePrefix": "namePrefix",
                "nameSuffix": "nameSuffix"}
    other = [f for f in FLUX_TRANSFORMS if f not in emulated and spec.get(f)]
    assert not other, f"emulate {other} here"

    shutil.copytree(published, work)
    kus = yaml.safe_load((work / "kustomization.yaml").read_text())
    kus.update({field: spec[key] for key, field in emulated.items() if spec.get(key)})
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kus))
    built = subprocess.run([kubectl, "kustomize", str(work)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return built.stdout


def test_publish_pushes_what_kubectl_kustomize_builds_into_the_render(stack_copy, server, tmp_path):
    kubectl = tool_or_fail("kubectl")
    bare, url = server
    env = env_for(stack_copy, {"RAIBID_GITOPS_URL": url})
    proc = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert "publish:staging: published: environments/staging/" in proc.stdout

    clone = tmp_path / "clone"
    _git("clone", "-q", "--branch", "main", url, str(clone))
    render = stack_copy / "build/manifests/staging"
    objs = [d for f in sorted(render.glob("*.yaml")) for d in yaml_docs(f.read_text())]
    ks = next(o for o in objs if o["kind"] == "Kustomization")
    repo = next(o for o in objs if o["kind"] == "GitRepository")
    assert ks["spec"]["sourceRef"]["name"] == repo["metadata"]["name"]
    published = clone / ks["spec"]["path"]  # where Flux looks
    assert (published / "kustomization.yaml").is_file()
    built = subprocess.run([kubectl, "kustomize", str(published)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert _objects([built.stdout]) == _objects(f.read_text() for f in render.glob("*.yaml"))
    assert len(_objects([built.stdout])) == len(objs) > 40
    # and Flux applies it as it is, each object in its namespace: none is moved (the KEDA
    # chart's RoleBinding stays in kube-system, where apply:staging applies it)
    assert {o["metadata"].get("namespace") for o in objs} - {None, ks["metadata"]["namespace"]}
    flux = flux_build(kubectl, published, ks["spec"], tmp_path / "flux")
    assert _objects([flux]) == _objects(f.read_text() for f in render.glob("*.yaml"))
    # nothing else in the repository, and no Secret made from secret values
    assert sorted(p.name for p in clone.iterdir() if p.name != ".git") == ["environments"]
    assert not [o for o in objs if o["kind"] == "Secret"
                and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "secrets"]


def test_publish_commits_only_when_the_render_changed(stack_copy, server):
    bare, url = server
    env = env_for(stack_copy, {"RAIBID_GITOPS_URL": url})
    run_doit(stack_copy, "publish:staging", env=env, check=True)
    first = _git("rev-parse", "main", cwd=bare)

    again = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert "publish:staging" not in _executed(again)  # the render did not change: not even run
    # publish itself forced to run (`--always-execute` would render and validate again too)
    run_doit(stack_copy, "forget", "publish:staging", env=env, check=True)
    forced = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert _executed(forced) == ["publish:staging"], forced.stdout
    assert "unchanged, nothing pushed" in forced.stdout
    assert _git("rev-parse", "main", cwd=bare) == first

    main = stack_copy / "tanka/environments/staging/main.jsonnet"
    main.write_text(main.read_text().replace("server: { replicas: 2 },", "server: { replicas: 4 },"))
    changed = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert {"render:staging", "validate:staging", "publish:staging"} <= set(_executed(changed))
    assert "published" in changed.stdout
    assert _git("rev-list", "--count", "main", cwd=bare) == "2"
    dep = yaml.safe_load(_git("show", "main:environments/staging/apps-v1.Deployment-raibid-server.yaml", cwd=bare))
    assert dep["spec"]["replicas"] == 4
    assert "staging: render" in _git("log", "-1", "--format=%s", "main", cwd=bare)


def test_publish_refuses_rendered_secrets_and_names_an_unreachable_repository(stack_copy, server, tmp_path):
    bare, url = server
    proc = run_doit(stack_copy, "publish:local", env=env_for(stack_copy, {"RAIBID_GITOPS_URL": url}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "never written to Git" in out and "raibid-redis" in out
    assert _git("for-each-ref", cwd=bare) == ""  # nothing pushed

    missing = f"file://{tmp_path / 'no-such-repo.git'}"
    proc = run_doit(stack_copy, "publish:staging", env=env_for(stack_copy, {"RAIBID_GITOPS_URL": missing}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "cannot reach the GitOps repository" in out and "RAIBID_GITOPS_URL" in out
    assert "Traceback" not in out


def test_an_edited_render_is_rendered_again_before_it_is_published(stack_copy, server):
    """The image of the staging server swapped for a backdoor (pinned, so the policies would
    pass it; its time kept) and a stray file added in build/manifests/staging/, then the
    digest file replaced by bytes that are no digest: publish:staging renders again first,
    so what it pushes is the render validate checked, named by its digest."""
    bare, url = server
    env = env_for(stack_copy, {"RAIBID_GITOPS_URL": url})
    out = stack_copy / "build/manifests/staging"
    server_file = out / "apps-v1.Deployment-raibid-server.yaml"
    rendered, st = server_file.read_text(), server_file.stat()
    record = stack_copy / "build/manifests/staging.sha256"
    digest = record.read_text().strip()
    server_file.write_text(rendered.replace("image: git.raibid.internal/raibid/raibid-server:0.1.0",
                                            "image: evil.example/backdoor:0.1.0"))
    os.utime(server_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    stray = out / "v1.ConfigMap-stray.yaml"
    stray.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray}\n")
    proc = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert "render:staging" in _executed(proc) and "publish:staging" in _executed(proc), proc.stdout
    assert server_file.read_text() == rendered and not stray.exists()
    published = _git("show", f"main:environments/staging/{server_file.name}", cwd=bare)
    assert published == rendered.strip() and "evil.example" not in published
    assert "ConfigMap-stray" not in _git("ls-tree", "-r", "--name-only", "main", cwd=bare)
    subject = _git("log", "-1", "--format=%s", "main", cwd=bare)
    assert subject.startswith(f"staging: render {digest[:12]}"), subject

    record.write_bytes(b"\xff\xfe not-a-digest\n")
    run_doit(stack_copy, "forget", "publish:staging", check=True)
    proc = run_doit(stack_copy, "publish:staging", env=env, check=True)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "render:staging" in _executed(proc), proc.stdout
    assert "unchanged, nothing pushed" in proc.stdout, proc.stdout
    assert record.read_text().strip() == digest

    # forgotten: rendered again
    run_doit(stack_copy, "forget", "render:staging", check=True)
    again = run_doit(stack_copy, "render:staging", check=True)
    assert _executed(again) == ["render:staging"], again.stdout


def test_a_digest_file_that_is_a_directory_is_one_clear_error(stack_copy, server):
    bare, url = server
    digest = stack_copy / "build/manifests/staging.sha256"
    digest.unlink()
    digest.mkdir()
    env = env_for(stack_copy, {"RAIBID_GITOPS_URL": url})
    proc = run_doit(stack_copy, "publish:staging", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert "build/manifests/staging.sha256" in out and "Is a directory" in out, out
    assert _git("for-each-ref", cwd=bare) == ""  # nothing pushed


def test_publishing_an_environment_with_confirm_apply_needs_yes(stack_copy, server):
    """prod has ``confirm_apply`` (deploy.json) and Flux applies what is published, with
    prune: publish:prod asks for the same --yes as apply:prod, before anything is pushed."""
    bare, url = server
    env = env_for(stack_copy, {"RAIBID_GITOPS_URL": url})
    refused = run_doit(stack_copy, "publish:prod", env=env)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "Traceback" not in out, out
    assert "refusing to publish prod without confirmation" in out
    assert "run `doit publish:prod --yes`" in out
    assert _git("for-each-ref", cwd=bare) == ""  # nothing pushed
    published = run_doit(stack_copy, "publish:prod", "--yes", env=env, check=True)
    assert "publish:prod: published: environments/prod/" in published.stdout
    assert "needs --yes" in run_doit(stack_copy, "help", "publish:prod").stdout

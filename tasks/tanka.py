"""Tanka tasks: chart vendoring, formatting, library tests, local secrets, and per
environment render, validate, diff and apply.

Up-to-date rules:

- ``vendor:charts`` runs when chartfile.yaml changed or a chart is missing or not at its
  pin; ``tk tool charts vendor`` itself skips charts already at their pin, so with the
  charts present nothing touches the network.
- ``render:<env>`` runs when a file the environment imports changed. The imports come
  from the depfile ``build/manifests/<env>.deps.json`` that the previous render wrote
  from ``tk tool imports`` (as Ninja does), with the state (mtime, size, sha256) of each
  import, of spec.json, chartfile.yaml and every vendored chart file; no depfile means
  render. The export parameters count too. The output directory is replaced
  atomically; ``build/manifests/<env>.sha256`` is the digest of what was rendered.
- ``validate:<env>`` runs when that digest, the pinned CRDs (``doit crds``) or the checks
  changed.
- ``apply:<env>`` asks the cluster: it is up to date only while the ConfigMap
  ``raibid-deploy-applied`` in the namespace holds the digest of the rendered manifests
  and the image references, so a recreated cluster is deployed again. It applies what
  ``tk show`` gives (the render plus the pushed image refs) server-side, with the field
  manager ``raibid-deploy``: no last-applied annotation (a large CRD does not fit in
  one), CRDs and Namespaces first and Established before the objects that need them, and
  a second apply of the same objects changes nothing. ``diff:<env>`` asks the server the
  same way (``kubectl diff --server-side``), listing what the apply would create first.

``render:*`` and ``validate:*`` need the vendored charts, which a clean clone without
network lacks: the ``ci`` task includes them through ``tanka:manifests`` only when the
charts are present (it says so otherwise).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from . import atomic, core, paths, tools

#: the chart directories chartfile.yaml vendors into tanka/charts/
CHARTS = ("redis", "gitea", "keda", "flux2")
#: library test suites: tanka/tests/<name>_test.jsonnet, run by libtest:<name>
LIBTESTS = ("libs", "redis", "gitea", "keda", "flux", "server", "agent", "secrets")
#: the environment whose render reads the generated local secrets
LOCAL_ENV = "local"
#: the ConfigMap apply:<env> records the applied digest in
APPLIED_CONFIGMAP = "raibid-deploy-applied"
#: parameters of `tk export`; changing them re-renders
EXPORT_FORMAT = "{{.apiVersion}}.{{.kind}}-{{or .metadata.name .metadata.generateName}}"

core.offline_check("tanka:fmt", *(f"libtest:{n}" for n in LIBTESTS), "tanka:manifests")


# --------------------------------------------------------------------------- paths


def chartfile() -> Path:
    return paths.tanka() / "chartfile.yaml"


def charts_dir() -> Path:
    return paths.tanka() / "charts"


def env_dir(env: str) -> Path:
    return paths.tanka() / "environments" / env


def local_secrets_file() -> Path:
    """The generated, gitignored secrets the local render reads."""
    return env_dir(LOCAL_ENV) / "secrets.local.json"


def secret_keys_file() -> Path:
    """The keys of the local secrets (shared with tanka/lib/raibid/secrets.libsonnet)."""
    return paths.tanka() / "lib" / "raibid" / "secret-keys.json"


def manifests_dir(env: str) -> Path:
    return paths.build() / "manifests" / env


def depfile(env: str) -> Path:
    return paths.build() / "manifests" / f"{env}.deps.json"


def digest_file(env: str) -> Path:
    return paths.build() / "manifests" / f"{env}.sha256"


def images_dir() -> Path:
    return paths.build() / "images"


def _files_under(*dirs: Path, suffixes: tuple[str, ...] = ()) -> list[str]:
    out = []
    for d in dirs:
        if not d.is_dir():
            continue
        for base, subdirs, files in os.walk(d):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
            out.extend(str(Path(base) / f) for f in sorted(files)
                       if not suffixes or f.endswith(suffixes))
    return out


def jsonnet_sources() -> list[str]:
    """Our jsonnet files (libraries, environments, library tests), not vendored ones."""
    t = paths.tanka()
    return _files_under(t / "lib", t / "environments", t / "tests",
                        suffixes=(".jsonnet", ".libsonnet"))


def chart_files() -> list[str]:
    return _files_under(*(charts_dir() / c for c in CHARTS))


def charts_present() -> bool:
    return all((charts_dir() / c / "Chart.yaml").is_file() for c in CHARTS)


def _tk(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``tk`` in the Tanka project directory, capturing output."""
    return subprocess.run(["tk", *args], cwd=paths.tanka(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, preexec_fn=atomic.child_setup(), **kw)


def _fail(message: str):
    from doit.exceptions import TaskFailed

    return TaskFailed(message)


# --------------------------------------------------------------------------- vendoring


def pinned_charts() -> dict[str, str]:
    """``directory -> version`` from chartfile.yaml."""
    import yaml

    data = yaml.safe_load(chartfile().read_text()) or {}
    return {(r.get("directory") or r["chart"].split("/", 1)[1]): str(r["version"])
            for r in data.get("requires", [])}


def charts_at_pins() -> bool:
    """True when every chart of chartfile.yaml is vendored at its pinned version."""
    import yaml

    try:
        pins = pinned_charts()
    except (OSError, KeyError, ValueError):
        return False
    for directory, version in pins.items():
        chart_yaml = charts_dir() / directory / "Chart.yaml"
        try:
            if str((yaml.safe_load(chart_yaml.read_text()) or {}).get("version")) != version:
                return False
        except OSError:
            return False
    return True


def _vendor_charts():
    proc = _tk("tool", "charts", "vendor")
    if proc.returncode != 0:
        return _fail(f"`tk tool charts vendor` failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                     f"Check {paths.rel(chartfile())} and the network; charts already at their "
                     "pinned version are never downloaded again.")
    missing = [c for c in CHARTS if not (charts_dir() / c / "Chart.yaml").is_file()]
    if missing:
        return _fail(f"after vendoring, tanka/charts/ lacks {', '.join(missing)}: "
                     f"{paths.rel(chartfile())} must pin exactly {', '.join(CHARTS)}")
    return None


def task_vendor():
    """Vendor the pinned Helm charts into tanka/charts/ (offline once they are there)."""
    yield tools.needs({
        "name": "charts",
        "doc": "Vendor the four pinned Helm charts (redis, gitea, keda, flux2) with `tk tool charts vendor`",
        "actions": [_vendor_charts],
        "file_dep": [str(chartfile())],
        "targets": [str(charts_dir() / c / "Chart.yaml") for c in CHARTS],
        "uptodate": [charts_at_pins],
        "verbosity": 1,
    }, "tk", "helm")


# --------------------------------------------------------------------------- fmt, libtests


def _fmt_check():
    proc = _tk("fmt", "--test", ".")
    if proc.returncode == 0:
        return None
    if proc.returncode == 16:
        files = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                 if line.strip().endswith((".jsonnet", ".libsonnet"))]
        listed = "\n".join(f"  tanka/{f}" if not f.startswith("tanka/") else f"  {f}" for f in files)
        return _fail("jsonnet files are not formatted:\n"
                     f"{listed or (proc.stdout + proc.stderr).strip()}\n"
                     "Fix: tk fmt tanka/")
    return _fail(f"`tk fmt --test` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()}")


def test_file(name: str) -> Path:
    return paths.tanka() / "tests" / f"{name}_test.jsonnet"


def run_libtest(name: str):
    """Evaluate one jsonnet test suite and report every failing case readably.

    A suite evaluates to ``{ 'case name': t.eq(actual, expected) or t.ok(bool), ... }``
    (tanka/tests/test.libsonnet); a jsonnet error (a failed ``assert``) fails too.
    """
    f = test_file(name)
    if not f.is_file():
        return _fail(f"no test suite {paths.rel(f)}: libtest:{name} needs it")
    proc = _tk("eval", str(f.relative_to(paths.tanka())))
    if proc.returncode != 0:
        return _fail(f"libtest:{name}: {paths.rel(f)} does not evaluate:\n{proc.stderr.strip()}")
    try:
        cases = json.loads(proc.stdout)
    except ValueError:
        return _fail(f"libtest:{name}: {paths.rel(f)} did not evaluate to JSON:\n{proc.stdout[:2000]}")
    if not isinstance(cases, dict) or not cases:
        return _fail(f"libtest:{name}: {paths.rel(f)} must evaluate to a non-empty object of test cases")
    failed = []
    for case, result in cases.items():
        if not (isinstance(result, dict) and "ok" in result):
            failed.append(f"  {case}: not a test result (use t.eq or t.ok from test.libsonnet)")
        elif result["ok"] is not True:
            if "expected" in result:
                failed.append(f"  {case}:\n      expected {json.dumps(result['expected'], sort_keys=True)}\n"
                              f"      actual   {json.dumps(result.get('actual'), sort_keys=True)}")
            else:
                failed.append(f"  {case}: {result.get('message', 'false')}")
    if failed:
        return _fail(f"libtest:{name}: {len(failed)} of {len(cases)} cases failed ({paths.rel(f)}):\n"
                     + "\n".join(failed))
    print(f"libtest:{name}: {len(cases)} cases passed")
    return None


def task_tanka():
    """Tanka project checks: jsonnet formatting and the validated renders."""
    yield tools.needs({
        "name": "fmt",
        "doc": "Check jsonnet formatting with `tk fmt --test` (fix: tk fmt tanka/)",
        "actions": [_fmt_check],
        "file_dep": jsonnet_sources(),
        "verbosity": 1,
    }, "tk")
    if charts_present():
        yield {
            "name": "manifests",
            "doc": "Render and validate every environment (part of `ci` when the charts are vendored)",
            "actions": None,
            "task_dep": [f"validate:{e}" for e in _environments()],
        }
    else:
        yield {
            "name": "manifests",
            "doc": "Render and validate every environment: skipped until `doit vendor:charts` ran",
            "actions": [core.skip_action("tanka:manifests: charts are not vendored (tanka/charts/); "
                                         "render and validate are skipped. Run `doit vendor:charts` "
                                         "(needs network once), then `doit` again.")],
            "uptodate": [False],
            "verbosity": 2,
        }


def task_libtest():
    """Run the jsonnet library tests (tanka/tests/<name>_test.jsonnet)."""
    libs = _files_under(paths.tanka() / "lib") + _files_under(paths.tanka() / "tests")
    for name in LIBTESTS:
        yield tools.needs({
            "name": name,
            "doc": f"Library tests of {name} (tanka/tests/{name}_test.jsonnet)",
            "actions": [(run_libtest, [name])],
            "file_dep": sorted(set(libs + [str(test_file(name))])),
            "verbosity": 1,
        }, "tk", "helm")


# --------------------------------------------------------------------------- secrets


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


def generate_local_secrets() -> None:
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
            return _fail(f"{paths.rel(f)} is not a JSON object: fix or delete it, then run "
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


# --------------------------------------------------------------------------- render


def _environments() -> list[str]:
    return list(core.plan_or_exit().settings.environments)


def _file_state(path: Path) -> list:
    """``[mtime_ns, size, sha256]`` of a file (what the depfile records)."""
    st = path.stat()
    return [st.st_mtime_ns, st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()]


def render_inputs(env: str, imports: list[str]) -> list[str]:
    """Project-relative inputs of a render: its imports, spec.json, chartfile.yaml and
    every file of the vendored charts."""
    extra = [env_dir(env) / "spec.json", chartfile()] + [Path(p) for p in chart_files()]
    return sorted(set(imports) | {paths.rel(p) for p in extra})


def read_depfile(env: str) -> dict | None:
    try:
        data = json.loads(depfile(env).read_text())
        return data if isinstance(data.get("files"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


#: the tools whose build decides what a render produces
RENDER_TOOLS = ("tk", "helm")


def render_params(env: str) -> dict:
    """The parameters of `tk export` (recorded in the depfile; a change renders again)."""
    return {"format": EXPORT_FORMAT, "out": paths.rel(manifests_dir(env))}


def tool_identity() -> dict[str, list]:
    """``name -> [path, size, mtime_ns]`` of the tk and helm a render runs: a rebuilt or
    another tool renders again (cheaper than asking each for its version)."""
    out = {}
    for name in RENDER_TOOLS:
        exe = tools.which(name)
        if exe is None:
            out[name] = None
            continue
        real = os.path.realpath(exe)
        try:
            st = os.stat(real)
        except OSError:
            out[name] = None
            continue
        out[name] = [real, st.st_size, st.st_mtime_ns]
    return out


class RenderUptodate:
    """A file the last render imported changed (its content, not only its time), a vendored
    chart file was added, removed or changed, tk or helm was rebuilt or replaced, the
    export parameters changed, or the output is missing; the depfile
    build/manifests/<env>.deps.json records them. `doit info render:<env>` names which.

    The doit ``uptodate`` of render:<env>. Up to date while the depfile of the last render exists and no file in it changed
    (mtime and size first, content hash when they differ), the set of chart files, the
    export parameters and the tk/helm binaries are the same, and the output is there.
    Ninja's depfile rule: the imports of the *last* render decide, so adding or removing
    an import never forces a spurious render. ``doit info render:<env>`` prints
    :attr:`reason` (via ``str``), and the reporter shows it when the render runs.
    """

    def __init__(self, env: str):
        self.env = env
        self.reason = ""

    def __str__(self) -> str:
        return self.reason or f"the inputs of render:{self.env} (unchanged)"

    def __call__(self, task, values):
        self.reason = self.why()
        return not self.reason

    def why(self) -> str:
        """Empty when the render is current; otherwise the first input that changed."""
        env = self.env
        recorded = read_depfile(env)
        if recorded is None:
            return f"no record of a previous render ({paths.rel(depfile(env))})"
        if not manifests_dir(env).is_dir():
            return f"{paths.rel(manifests_dir(env))}/ is missing"
        if recorded.get("params") != render_params(env):
            return "the export parameters changed"
        tools_then, tools_now = recorded.get("tools") or {}, tool_identity()
        for name in RENDER_TOOLS:
            now = tools_now.get(name)
            if tools_then.get(name) != now:
                return f"tool {name} changed ({paths.rel(Path(now[0])) if now else 'missing'})"
        files = recorded["files"]
        charts_now = {paths.rel(Path(p)) for p in chart_files()}
        charts_then = {p for p in files if p.startswith("tanka/charts/")}
        if charts_now != charts_then:
            added, removed = sorted(charts_now - charts_then), sorted(charts_then - charts_now)
            return (f"chart file {added[0]} was added" if added else f"chart file {removed[0]} was removed")
        root = paths.root()
        for rel, (mtime_ns, size, sha) in files.items():
            f = root / rel
            try:
                st = f.stat()
            except OSError:
                return f"{rel} is missing"
            if (st.st_mtime_ns, st.st_size) == (mtime_ns, size):
                continue
            if st.st_size != size or hashlib.sha256(f.read_bytes()).hexdigest() != sha:
                return f"{rel} changed"
        return ""


def render_uptodate(env: str) -> RenderUptodate:
    return RenderUptodate(env)


def tk_imports(env: str) -> list[str]:
    """``tk tool imports`` of an environment, as project-relative paths.

    tk asks git for the repository root; outside a git checkout (a copied project) it
    gets a throwaway one, so the command works anywhere.
    """
    main = env_dir(env) / "main.jsonnet"
    env_vars = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="tk-imports-") as tmp:
        try:
            probe = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=paths.tanka(),
                                   capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError("`tk tool imports` needs git on PATH (install git)") from None
        if probe.returncode != 0:
            subprocess.run(["git", "init", "-q", "--bare", tmp], check=True, capture_output=True)
            env_vars.update(GIT_DIR=tmp, GIT_WORK_TREE=str(paths.tanka()))
        proc = subprocess.run(["tk", "tool", "imports", str(main)], cwd=paths.tanka(),
                              capture_output=True, text=True, env=env_vars, stdin=subprocess.DEVNULL,
                              preexec_fn=atomic.child_setup())
    if proc.returncode != 0:
        raise RuntimeError(f"`tk tool imports {paths.rel(main)}` failed:\n{proc.stderr.strip()}")
    rel_to_tanka = json.loads(proc.stdout)
    return sorted(paths.rel(paths.tanka() / p) for p in rel_to_tanka)


#: the file that marks a directory as made by render: only such a directory is ever replaced
RENDER_MARK = ".rendered-by-doit"


def dir_digest(directory: Path) -> str:
    """sha256 over the relative names and contents of every file in ``directory``
    (except the render's mark)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != RENDER_MARK):
        h.update(str(f.relative_to(directory)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class RenderRefused(RuntimeError):
    """A render that would write outside build/manifests/ or replace what it did not make."""


def check_output(env: str) -> None:
    """Raise :class:`RenderRefused` unless render:<env> writes only its own files directly
    in build/manifests/ and the directory it replaces is one it made."""
    base = paths.build() / "manifests"
    for p in (manifests_dir(env), depfile(env), digest_file(env)):
        if Path(env).name != env or env in ("", ".", "..") or p.parent != base:
            raise RenderRefused(f"render:{env}: the output {p} would not be directly in "
                                f"{paths.rel(base)}/: nothing was written. An environment name is "
                                "one directory name (no '/' or '..').")
    for d in (paths.build(), base):
        if d.exists() and not d.is_dir():
            raise RenderRefused(f"render:{env}: {paths.rel(d)} is not a directory (a file is in the "
                                f"way): move it away, then run `doit render:{env}` again")
    out = manifests_dir(env)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RenderRefused(f"render:{env}: {paths.rel(out)} is not a directory render made: move it "
                            "away, then run the render again")
    if out.is_dir() and not (out / RENDER_MARK).is_file():
        try:
            legacy = digest_file(env).read_text().strip() == dir_digest(out)  # made before the mark
        except OSError:
            legacy = False
        if not legacy:
            raise RenderRefused(f"render:{env}: {paths.rel(out)}/ was not created by render:{env} "
                                "(it would be replaced): move it away, then run the render again")


def render(env: str):
    """``tk export`` an environment into build/manifests/<env>/, atomically, and write
    its depfile and digest. The output is private (0700 directory, 0600 files, from
    creation: local Secrets hold plaintext), and tk dies with doit."""
    check_output(env)
    out = manifests_dir(env)
    atomic.sweep_stale_temps(out.parent)
    # the inputs are recorded as they are before the export: a file edited while tk runs
    # makes the next run render again
    imports = tk_imports(env)
    files = {rel: _file_state(paths.root() / rel) for rel in render_inputs(env, imports)}
    tool_ids = tool_identity()
    with atomic.replace_dir(out, mode=0o700) as tmp:
        proc = subprocess.run(
            ["tk", "export", str(tmp), str(env_dir(env)), "--format", EXPORT_FORMAT,
             "--log-level", "warn"],
            cwd=paths.tanka(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
            preexec_fn=atomic.child_setup(umask=0o077))
        if proc.returncode != 0:
            # raising leaves the previous output exactly as it was
            raise RuntimeError(f"`tk export` of {paths.rel(env_dir(env))} failed:\n{proc.stderr.strip()}")
        digest = dir_digest(tmp)
        fd = os.open(tmp / RENDER_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"render:{env}\n".encode())
        os.close(fd)
    # the depfile last: it is what render_uptodate trusts, so a run interrupted before it
    # is written renders again (validate and apply key on the digest, written first)
    atomic.write_text(digest_file(env), digest + "\n")
    atomic.write_text(depfile(env), json.dumps({"env": env, "imports": imports, "files": files,
                                                "params": render_params(env), "tools": tool_ids},
                                               indent=1, sort_keys=True) + "\n")
    count = sum(1 for _ in out.glob("*.yaml"))
    print(f"render:{env}: {count} objects in {paths.rel(out)}/ (digest {digest[:12]})")


def _render_action(env: str):
    try:
        render(env)
    except RuntimeError as e:  # refused, or tk export / tk tool imports failed: say which and why
        return _fail(str(e))
    return None


def task_render():
    """Render an environment with `tk export` into build/manifests/<env>/ (incremental)."""
    for env in _environments():
        task = {
            "name": env,
            "doc": f"Render the {env} environment into build/manifests/{env}/ (re-runs only when an import changed)",
            "actions": [(_render_action, [env])],
            "targets": [str(digest_file(env)), str(depfile(env))],
            "task_dep": ["vendor:charts"] + (["secrets:local"] if env == LOCAL_ENV else []),
            "uptodate": [render_uptodate(env)],
            "verbosity": 1,
        }
        yield tools.needs(task, "tk", "helm", "git")


# --------------------------------------------------------------------------- validate


def _validate_action(env: str, k8s_version: str):
    from . import crds, manifests

    directory = manifests_dir(env)
    if not directory.is_dir():
        return _fail(f"{paths.rel(directory)} does not exist: run `doit render:{env}`")
    try:
        count, violations = manifests.validate_dir(directory, env, k8s_version, crds.crd_dir())
    except manifests.UnsupportedVersion as e:
        return _fail(f"validate:{env}: {e}")
    if violations:
        lines = "\n".join(f"  {v}" for v in violations)
        return _fail(f"validate:{env}: {len(violations)} violation(s) in {count} objects "
                     f"({paths.rel(directory)}/):\n{lines}")
    print(f"validate:{env}: {count} objects valid (Kubernetes {k8s_version} schemas, CRDs, policies)")
    from . import controlplane  # the server-side dry-run, when the control plane is installed

    problem, note = controlplane.server_dry_run(env, directory)
    if problem:
        return _fail(problem)
    import sys

    print(f"validate:{env}: {note}", file=sys.stderr)  # shown even when the task's output is not
    return None


def task_validate():
    """Validate a rendered environment: Kubernetes schemas, CRD schemas and policies."""
    from doit.tools import config_changed

    from . import controlplane, crds, gitops, manifests

    plan = core.plan_or_exit()
    version = plan.settings.kubernetes_version
    for env in plan.settings.environments:
        yield {
            "name": env,
            "doc": f"Validate build/manifests/{env}/ against Kubernetes {version}, the CRDs and the policies",
            "actions": [(_validate_action, [env, version])],
            # the pinned CRDs (build/crds/crds.json, target of `doit crds`)
            "file_dep": [str(digest_file(env)), manifests.__file__, gitops.__file__, str(crds.index_file())],
            "uptodate": [config_changed({"kubernetes_version": version, "strict": True,
                                         "server_dry_run": controlplane.tools_present()})],
            "verbosity": 1,
        }


# --------------------------------------------------------------------------- diff, apply


def context_of(env: str) -> str:
    """The first kube context of an environment's spec.json."""
    spec = json.loads((env_dir(env) / "spec.json").read_text())
    names = spec.get("spec", {}).get("contextNames") or []
    if not names:
        raise SystemExit(f"{paths.rel(env_dir(env) / 'spec.json')}: spec.contextNames is empty")
    return names[0]


def namespace_of(env: str) -> str:
    spec = json.loads((env_dir(env) / "spec.json").read_text())
    return spec.get("spec", {}).get("namespace") or core.plan_or_exit().settings.namespace


def image_overrides() -> dict[str, str]:
    """Image refs the push tasks wrote (build/images/<name>.cluster.json: {"name", "ref"})."""
    out = {}
    for name in ("server", "agent"):
        f = images_dir() / f"{name}.cluster.json"
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("ref"):
            out[name] = str(data["ref"])
    return out


def tla_args() -> list[str]:
    return ["--tla-code", "images=" + json.dumps(image_overrides(), sort_keys=True)]


def deploy_digest(env: str) -> str:
    """What apply:<env> deploys: the rendered manifests' digest and the image refs."""
    try:
        rendered = digest_file(env).read_text().strip()
    except OSError:
        rendered = "not-rendered"
    payload = json.dumps({"env": env, "manifests": rendered, "images": image_overrides()},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def applied_digest(env: str) -> str | None:
    """The digest recorded in the cluster by the last apply, or None (asked live)."""
    if tools.which("kubectl") is None:
        return None
    try:
        proc = subprocess.run(
            ["kubectl", "--context", context_of(env), "--namespace", namespace_of(env),
             "get", "configmap", APPLIED_CONFIGMAP, "-o", "jsonpath={.data.digest}"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def kube_contexts() -> list[str] | None:
    """The context names of the kubeconfig (``kubectl config view``), None if unreadable."""
    proc = subprocess.run(["kubectl", "config", "view", "-o", "json"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return None
    try:
        return [c.get("name") for c in (json.loads(proc.stdout).get("contexts") or [])]
    except (ValueError, AttributeError):
        return None


def _context_action(env: str, verb: str):
    """doit action: fail with what to do when the environment's kube context is not configured
    (tk's own error for a missing context is cryptic)."""

    def check_context():
        ctx = context_of(env)
        contexts = kube_contexts()
        if contexts is None or ctx in contexts:
            return None  # unreadable kubeconfig: let tk say what is wrong
        hint = ("`doit cluster` creates the k3d cluster and its context" if env == LOCAL_ENV
                else "Add it to your kubeconfig (or point KUBECONFIG at one that has it)")
        return _fail(f"kube context {ctx!r} ({paths.rel(env_dir(env) / 'spec.json')}) is not in your "
                     f"kubeconfig: nothing was {verb}. {hint}.")

    return check_context


def _applied_uptodate(env: str):
    def check(task, values):
        return applied_digest(env) == deploy_digest(env)

    return check


def _confirm_prod(env: str, yes_prod: bool):
    if env == "prod" and not yes_prod:
        return _fail("refusing to apply to prod without confirmation: run `doit apply:prod --yes-prod`")
    return None


#: the field manager of everything apply:<env> writes (server-side apply)
FIELD_MANAGER = "raibid-deploy"
#: kinds applied, and waited for, before everything else: what other objects need to exist
FIRST_KINDS = ("CustomResourceDefinition", "Namespace")


def deploy_objects(env: str) -> list[dict]:
    """What apply:<env> deploys: the render (build/manifests/<env>/, which apply's
    validate dependency keeps current) or, when images were pushed, ``tk show`` of the
    environment with their refs (the same objects, with Tanka's labels and namespaces)."""
    import yaml

    if not image_overrides():
        return rendered_objects(manifests_dir(env))
    proc = subprocess.run(["tk", "show", str(env_dir(env)), "--dangerous-allow-redirect", *tla_args()],
                          cwd=paths.tanka(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"`tk show {paths.rel(env_dir(env))}` failed:\n{proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict) and d.get("kind")]


def rendered_objects(directory: Path) -> list[dict]:
    """The objects of a render directory (build/manifests/<env>/)."""
    from .manifests import load_dir

    return [o for _, o in load_dir(directory) if o.get("kind")]


def _object_list(objects: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def _ref(o: dict) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


def kubectl_argv(context: str, kubeconfig: str | None = None, cache_dir: str | None = None,
                 exe: str | None = None) -> list[str]:
    """``kubectl`` for one context (for the test control plane: its own kubeconfig and
    discovery cache, so nothing under ~/.kube is read or written, and the kubectl it was
    started with)."""
    argv = [exe or tools.which("kubectl") or "kubectl"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if cache_dir:
        argv += ["--cache-dir", cache_dir]
    return argv + ["--context", context]


def server_side_apply(kubectl: list[str], objects: list[dict], namespace: str, manager: str = FIELD_MANAGER,
                      dry_run: bool = False, first_manager: str | None = None,
                      wait: int = 120) -> tuple[bool, str]:
    """Server-side apply ``objects`` in two steps, so custom resources never race their CRDs:
    the CRDs and Namespaces first (always for real: a dry-run of a custom resource needs its
    CRD established), wait until the CRDs are Established, then everything (with
    ``dry_run``: ``--dry-run=server``). Returns (ok, kubectl's output)."""
    base = ["apply", "--server-side", "--force-conflicts", f"--field-manager={manager}"]
    out = []

    def run(argv, stdin=None):
        proc = subprocess.run(kubectl + argv, input=stdin, capture_output=True, text=True)
        out.append(proc.stdout.strip())
        if proc.returncode != 0:
            out.append(proc.stderr.strip())
        return proc.returncode == 0

    first = [o for o in objects if o.get("kind") in FIRST_KINDS]
    crds = [o["metadata"]["name"] for o in first if o["kind"] == "CustomResourceDefinition"]
    if first:
        first_base = base if first_manager is None else base[:-1] + [f"--field-manager={first_manager}"]
        if not run(first_base + ["-f", "-"], _object_list(first)):
            return False, "\n".join(filter(None, out))
    if crds and not run(["wait", "--for=condition=Established", f"--timeout={wait}s",
                         *(f"customresourcedefinition/{n}" for n in crds)]):
        return False, "\n".join(filter(None, out))
    rest = [o for o in objects if not (dry_run and o.get("kind") in FIRST_KINDS)]
    ok = run(base + ["--namespace", namespace, *(["--dry-run=server"] if dry_run else []), "-f", "-"],
             _object_list(rest))
    return ok, "\n".join(filter(None, out))


def served_kinds(kubectl: list[str], objects: list[dict]) -> dict[tuple[str, str], bool] | None:
    """``(apiVersion, kind) -> namespaced`` for the kinds of ``objects`` the server serves
    (asked by discovery, one call per group version); None when the server cannot be asked."""
    served: dict[tuple[str, str], bool] = {}
    for api_version in sorted({o["apiVersion"] for o in objects}):
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        proc = subprocess.run(kubectl + ["get", "--raw", path], capture_output=True, text=True)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "could not find the requested resource" in proc.stderr:
                continue  # the group is not served (yet): its CRD is part of the apply
            return None
        for r in json.loads(proc.stdout).get("resources", []):
            if "/" not in r["name"]:
                served[(api_version, r["kind"])] = bool(r.get("namespaced"))
    return served


def diff_objects(kubectl: list[str], objects: list[dict], namespace: str,
                 manager: str = FIELD_MANAGER) -> tuple[int, str]:
    """What a server-side apply of ``objects`` would change: ``kubectl diff --server-side``
    of what the server can already take, and "would be created" for the rest (custom
    resources whose CRD, and objects whose namespace, the apply creates first). Returns
    (0 no differences | 1 differences | 2 error, text)."""
    served = served_kinds(kubectl, objects)
    if served is None:
        return 2, "cannot ask the cluster which kinds it serves (is it running?)"
    ns = subprocess.run(kubectl + ["get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}"],
                        capture_output=True, text=True)
    if ns.returncode != 0:
        return 2, ns.stderr.strip()
    existing = set(ns.stdout.split())
    live, soon = [], []
    for o in objects:
        key = (o["apiVersion"], o["kind"])
        missing_ns = served.get(key) and (o["metadata"].get("namespace") or namespace) not in existing
        (soon if key not in served or missing_ns else live).append(o)
    text, code = [], 0
    if live:
        proc = subprocess.run(kubectl + ["diff", "--server-side", "--force-conflicts", f"--field-manager={manager}",
                                         "--namespace", namespace, "-f", "-"],
                              input=_object_list(live), capture_output=True, text=True)
        if proc.returncode > 1:
            return 2, (proc.stderr or proc.stdout).strip()
        code = proc.returncode
        text.append(proc.stdout.rstrip())
    if soon:
        code = 1
        text.append("would be created (their CRD or namespace is created by the same apply):\n"
                    + "\n".join(f"  + {_ref(o)}" for o in soon))
    return code, "\n".join(t for t in text if t)


def _apply_action(env: str):
    try:
        objects = deploy_objects(env)
    except RuntimeError as e:
        return _fail(str(e))
    kubectl = kubectl_argv(context_of(env))
    ok, output = server_side_apply(kubectl, objects, namespace_of(env))
    print(output)
    if not ok:
        return _fail(f"apply:{env}: the server-side apply failed (see above); nothing was recorded, "
                     f"so the next `doit apply:{env}` applies again. `doit diff:{env}` shows what would change.")
    digest = deploy_digest(env)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APPLIED_CONFIGMAP, "namespace": namespace_of(env),
                     "labels": {"app.kubernetes.io/managed-by": "raibid-deploy"}},
        "data": {"digest": digest, "environment": env,
                 "images": json.dumps(image_overrides(), sort_keys=True)},
    }
    rec = subprocess.run(kubectl + ["apply", "--server-side", "--force-conflicts",
                                    f"--field-manager={FIELD_MANAGER}", "-f", "-"],
                         input=json.dumps(configmap), capture_output=True, text=True)
    if rec.returncode != 0:
        return _fail(f"applied, but recording {APPLIED_CONFIGMAP} failed (the next apply will run "
                     f"again):\n{rec.stderr.strip()}")
    print(f"apply:{env}: {len(objects)} objects applied server-side (field manager {FIELD_MANAGER}); "
          f"recorded digest {digest[:12]} in ConfigMap {APPLIED_CONFIGMAP}")
    return None


def _diff_action(env: str):
    try:
        objects = deploy_objects(env)
    except RuntimeError as e:
        return _fail(str(e))
    code, text = diff_objects(kubectl_argv(context_of(env)), objects, namespace_of(env))
    if code > 1:
        return _fail(f"diff:{env}: asking the cluster failed:\n{text}")
    if code == 1:
        print(text)
        print(f"diff:{env}: the cluster differs from the render (see above); `doit apply:{env}` applies it")
        return None
    print(f"diff:{env}: no differences")
    return None


def task_diff():
    """Show what applying an environment would change in its cluster (server-side `kubectl diff`)."""
    for env in _environments():
        yield tools.needs({
            "name": env,
            "doc": f"Diff the {env} environment against its cluster (server-side, as apply:{env} applies; needs a cluster)",
            "actions": [_context_action(env, "diffed"), (_diff_action, [env])],
            "task_dep": [f"validate:{env}"],
            "uptodate": [False],
            "verbosity": 2,
        }, "tk", "helm", "kubectl")


def task_apply():
    """Deploy an environment to its cluster: server-side apply, CRDs first (prod needs --yes-prod)."""
    for env in _environments():
        params = []
        if env == "prod":
            params = [{"name": "yes_prod", "long": "yes-prod", "type": bool, "default": False,
                       "help": "confirm applying to production"}]
            actions = [_confirm_prod_action, _context_action(env, "applied"), (_apply_action, [env])]
        else:
            actions = [_context_action(env, "applied"), (_apply_action, [env])]
        yield tools.needs({
            "name": env,
            "doc": (f"Apply the {env} environment server-side, CRDs first (up to date while the cluster holds "
                    f"its digest){'; needs --yes-prod' if env == 'prod' else ''}"),
            "actions": actions,
            "params": params,
            "task_dep": [f"validate:{env}"],
            "uptodate": [_applied_uptodate(env)],
            "verbosity": 2,
        }, "tk", "helm", "kubectl")


def _confirm_prod_action(yes_prod):
    return _confirm_prod("prod", yes_prod)

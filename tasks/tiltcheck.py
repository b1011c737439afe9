"""Evaluate the Tiltfile offline: a real Starlark interpreter with recording Tilt builtins.

``evaluate()`` runs the Tiltfile with starlark-pyo3 (the Rust Starlark implementation
Tilt's dialect descends from). Every Tilt builtin the Tiltfile uses is implemented here
as a *recording* function: it checks its arguments the way Tilt does, records the call
and returns a value of the right shape; nothing is built, applied or run. Reading
functions (``read_yaml``, ``read_yaml_stream``, ``listdir``) read the real files.
After evaluation, :meth:`Recording.problems` applies the checks Tilt makes when it
assembles the resources (unknown workloads and dependencies, unused images, port
clashes, live_update order and paths...). ``doit tilt:check`` fails on any of them.

Extensions loaded with ``load('ext://NAME', ...)`` are provided for ``uibutton`` (recording)
and ``restart_process`` (which, like the real one, declares a ``-base`` image and a
child image whose live_update ends with a run step that restarts the process).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

#: the restart_process extension, as Starlark: same signature and effect as Tilt's
_RESTART_PROCESS = '''
def docker_build_with_restart(ref, context, entrypoint, live_update, base_suffix='-base',
                              restart_file='/tmp/.restart-proc', **kwargs):
    if len(live_update) == 0:
        fail('`docker_build_with_restart` requires at least one live_update step')
    base_ref = ref + base_suffix
    docker_build(base_ref, context, **kwargs)
    df = "FROM tiltdev/restart-helper as restart-helper\\nFROM %s\\nRUN [\\"touch\\", \\"%s\\"]\\n" % (base_ref, restart_file)
    if type(entrypoint) == type(""):
        wrapped = ['/tilt-restart-wrapper', '--watch_file=' + restart_file, 'sh', '-c', entrypoint]
    else:
        wrapped = ['/tilt-restart-wrapper', '--watch_file=' + restart_file] + entrypoint
    cleaned = {k: v for k, v in kwargs.items() if k not in ['dockerfile', 'dockerfile_contents', 'target']}
    _restart_process_wrapped(ref, restart_file)
    docker_build(ref, context, entrypoint=wrapped, dockerfile_contents=df,
                 live_update=live_update + [run('date > ' + restart_file)], **cleaned)
'''


class TiltfileError(Exception):
    """The Tiltfile failed to evaluate, or Tilt would reject what it declares."""


@dataclass
class Call:
    name: str
    args: dict

    def __getitem__(self, key):
        return self.args[key]

    def get(self, key, default=None):
        return self.args.get(key, default)


@dataclass
class Recording:
    root: Path
    calls: list[Call] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)       # every k8s_yaml object
    kinds: dict[str, dict] = field(default_factory=dict)    # k8s_kind registrations
    restart_wrapped: dict[str, str] = field(default_factory=dict)

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def one(self, _builtin: str, **match) -> Call:
        found = [c for c in self.of(_builtin) if all(c.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise AssertionError(f"expected one {_builtin}({match}), found {len(found)}: {found}")
        return found[0]

    # ------------------------------------------------------------------ the model Tilt builds
    def workloads(self) -> dict[str, dict]:
        """Workload resource name -> object (built-in workload kinds and k8s_kind kinds)."""
        out = {}
        for o in self.objects:
            if o.get("kind") in WORKLOAD_KINDS or o.get("kind") in self.kinds:
                out[o["metadata"]["name"].lower()] = o
        return out

    def resources(self) -> dict[str, Call]:
        return {c["workload"]: c for c in self.of("k8s_resource")}

    def resource_names(self) -> set[str]:
        return set(self.workloads()) | {c["name"] for c in self.of("local_resource")}

    def images_of(self, obj: dict) -> list[str]:
        kind = self.kinds.get(obj.get("kind"))
        if kind and kind.get("image_json_path"):
            return [v for v in json_path(obj, kind["image_json_path"]) if isinstance(v, str)]
        spec = obj.get("spec") or {}
        if obj.get("kind") == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
        pod = spec if obj.get("kind") == "Pod" else ((spec.get("template") or {}).get("spec") or {})
        return [c.get("image", "") for key in ("initContainers", "containers")
                for c in pod.get(key) or []]

    def problems(self) -> list[str]:
        """What Tilt would reject (or silently ignore) in what the Tiltfile declared."""
        probs: list[str] = []
        workloads = self.workloads()
        names = self.resource_names()
        # k8s_resource: known workloads, deps and objects
        claimed: dict[str, str] = {}
        for c in self.of("k8s_resource"):
            w = c["workload"]
            if w not in workloads:
                probs.append(f"k8s_resource: no workload named {w!r} in the k8s_yaml manifests "
                             f"(workloads: {', '.join(sorted(workloads)) or 'none'})")
            for d in c.get("resource_deps") or []:
                if d not in names:
                    probs.append(f"k8s_resource({w!r}): resource_deps names unknown resource {d!r}")
            for sel in c.get("objects") or []:
                hits = [o for o in self.objects if selector_matches(sel, o)]
                if len(hits) != 1:
                    probs.append(f"k8s_resource({w!r}): object selector {sel!r} matches {len(hits)} objects")
                elif sel in claimed:
                    probs.append(f"object {sel!r} claimed by both {claimed[sel]!r} and {w!r}")
                else:
                    claimed[sel] = w
                    if hits[0].get("kind") in WORKLOAD_KINDS or hits[0].get("kind") in self.kinds:
                        probs.append(f"k8s_resource({w!r}): {sel!r} is a workload, not an object to claim")
        for c in self.of("local_resource"):
            for d in c.get("resource_deps") or []:
                if d not in names:
                    probs.append(f"local_resource({c['name']!r}): resource_deps names unknown resource {d!r}")
            if c["name"] in workloads:
                probs.append(f"local_resource {c['name']!r} has the name of a workload")
        # port forwards: one owner per local port
        ports: dict[int, str] = {}
        for c in self.of("k8s_resource"):
            for pf in c.get("port_forwards") or []:
                port = pf["local_port"] if isinstance(pf, dict) else int(pf)
                if port in ports:
                    probs.append(f"local port {port} forwarded by both {ports[port]!r} and {c['workload']!r}")
                ports[port] = c["workload"]
        # images: each build is deployed somewhere (or is the base of another build)
        used = {image_name(i) for o in workloads.values() for i in self.images_of(o)}
        bases = {m for c in self.of("docker_build")
                 for m in re.findall(r"^FROM\s+(\S+)", c.get("dockerfile_contents") or "", re.M)}
        for c in self.of("docker_build"):
            ref = c["ref"]
            if ref not in used and ref not in bases:
                probs.append(f"docker_build({ref!r}): no workload uses this image, so Tilt would "
                             f"build it for nothing (images in manifests: {', '.join(sorted(used)) or 'none'})")
            ctx = (self.root / c["context"]).resolve()
            probs.extend(_live_update_problems(ref, ctx, c.get("live_update") or [], self.root))
            df = c.get("dockerfile")
            if df and not (self.root / df).is_file() and not c.get("dockerfile_contents"):
                probs.append(f"docker_build({ref!r}): dockerfile {df} does not exist")
        # buttons on real resources
        for c in self.of("cmd_button"):
            r = c.get("resource")
            if r and r not in names:
                probs.append(f"cmd_button({c['name']!r}): unknown resource {r!r}")
        return probs


def _live_update_problems(ref: str, ctx: Path, steps: list, root: Path) -> list[str]:
    probs = []
    order = {"fall_back_on": 0, "sync": 1, "run": 2}
    last = 0
    for step in steps:
        kind = step.get("_step")
        if kind not in order:
            probs.append(f"docker_build({ref!r}): unknown live_update step {step!r}")
            continue
        if order[kind] < last:
            probs.append(f"docker_build({ref!r}): live_update steps must be fall_back_on, then sync, then run")
        last = order[kind]
        paths_ = step.get("files", []) if kind == "fall_back_on" else [step["local"]] if kind == "sync" else []
        for p in paths_:
            full = (root / p).resolve()
            if full != ctx and ctx not in full.parents:
                probs.append(f"docker_build({ref!r}): live_update path {p} is outside the build "
                             f"context {os.path.relpath(ctx, root)}: Tilt never sees it change")
    return probs


def image_name(ref: str) -> str:
    """``raibid-server`` for ``raibid-server:abc`` / ``reg:5000/raibid-server@sha256:..``."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    return ref


def json_path(obj, expr: str) -> list:
    """The subset of kubectl JSONPath Tilt's image_json_path uses: ``{.a.b[*].c}``."""
    expr = expr.strip()
    if not (expr.startswith("{") and expr.endswith("}")):
        raise TiltfileError(f"image_json_path {expr!r} must be wrapped in {{...}}")
    values = [obj]
    for part in re.findall(r"\.([^.\[]+)(\[\*\]|\[\d+\])?", expr[1:-1]):
        key, index = part
        nxt = []
        for v in values:
            if isinstance(v, dict) and key in v:
                item = v[key]
                if index == "[*]" and isinstance(item, list):
                    nxt.extend(item)
                elif index and isinstance(item, list):
                    i = int(index[1:-1])
                    if i < len(item):
                        nxt.append(item[i])
                elif not index:
                    nxt.append(item)
        values = nxt
    return values


def selector_matches(sel: str, obj: dict) -> bool:
    parts = sel.split(":")
    meta = obj.get("metadata") or {}
    want = [meta.get("name", ""), obj.get("kind", ""), meta.get("namespace", "")]
    return all(p.lower() == w.lower() for p, w in zip(parts, want)) and len(parts) <= 3


# --------------------------------------------------------------------------- the builtins


def _load_yaml_stream(path: Path, cache: dict) -> list:
    """Every document of a YAML file (libyaml when present; parsed once per evaluation)."""
    import yaml

    key = str(path)
    if key not in cache:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        cache[key] = list(yaml.load_all(path.read_text(), Loader=loader))
    return cache[key]


def _builtins(rec: Recording, root: Path, args: dict, env: dict):
    import copy

    import yaml

    parsed: dict[str, list] = {}

    def record(_builtin, **kw):
        rec.calls.append(Call(_builtin, kw))

    def path(p):
        return root / str(p)

    defined: dict[str, str] = {}

    def define_string(name, args=False, usage=""):
        defined[name] = "string"
        record("config.define_string", name=name, args=args, usage=usage)

    def define_bool(name, args=False, usage=""):
        defined[name] = "bool"
        record("config.define_bool", name=name, args=args, usage=usage)

    def define_string_list(name, args=False, usage=""):
        defined[name] = "string_list"
        record("config.define_string_list", name=name, args=args, usage=usage)

    def parse():
        unknown = sorted(set(args) - set(defined))
        if unknown:
            raise TiltfileError(f"config.parse: unknown Tiltfile args {unknown} (defined: {sorted(defined)})")
        record("config.parse", args=dict(args))
        return dict(args)

    def getenv(key, default=None):
        return env.get(key, default)

    def version_settings(check_updates=True, constraint=""):
        record("version_settings", check_updates=check_updates, constraint=constraint)

    def allow_k8s_contexts(contexts):
        record("allow_k8s_contexts", contexts=[contexts] if isinstance(contexts, str) else list(contexts))

    def default_registry(host, host_from_cluster=None, single_name=""):
        record("default_registry", host=host, host_from_cluster=host_from_cluster, single_name=single_name)

    def local(command, quiet=False, command_bat="", echo_off=False, env=None, dir=""):
        record("local", command=command, quiet=quiet, env=env or {}, dir=dir)
        return ""

    def watch_file(p):
        if not path(p).exists():
            raise TiltfileError(f"watch_file: {p} does not exist")
        record("watch_file", path=p)

    def listdir(directory, recursive=False):
        d = path(directory)
        record("listdir", directory=directory, recursive=recursive)
        if not d.is_dir():
            return []
        it = d.rglob("*") if recursive else d.iterdir()
        return sorted(str(p) for p in it if p.is_file())

    def reader(name, parse):
        """A Tilt read_* builtin: the parsed file, or ``default`` when it is missing."""
        def read(p, default=None):
            f = path(p)
            if not f.exists():
                if default is not None:
                    return default
                raise TiltfileError(f"{name}: {p} does not exist")
            return parse(f)
        return read

    read_yaml = reader("read_yaml", lambda f: yaml.safe_load(f.read_text()))
    read_yaml_stream = reader("read_yaml_stream", lambda f: copy.deepcopy(_load_yaml_stream(f, parsed)))
    read_json = reader("read_json", lambda f: json.loads(f.read_text()))

    def k8s_yaml(yaml_, allow_duplicates=False):
        files = [yaml_] if isinstance(yaml_, str) else list(yaml_)
        for f in files:
            fp = path(f)
            if not fp.is_file():
                raise TiltfileError(f"k8s_yaml: {f} does not exist")
            docs = [copy.deepcopy(d) for d in _load_yaml_stream(fp, parsed) if d]
            for d in docs:
                if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
                    raise TiltfileError(f"k8s_yaml: {f}: not a Kubernetes object: {str(d)[:80]}")
                items = d.get("items") if d["kind"].endswith("List") else [d]
                rec.objects.extend(items or [])
        record("k8s_yaml", files=[str(f) for f in files])

    def k8s_kind(kind, api_version=None, image_json_path=None, image_object=None, pod_readiness=""):
        rec.kinds[kind] = {"api_version": api_version, "image_json_path": image_json_path,
                           "pod_readiness": pod_readiness}
        if image_json_path:
            json_path({}, image_json_path)  # syntax check
        record("k8s_kind", kind=kind, api_version=api_version, image_json_path=image_json_path,
               pod_readiness=pod_readiness)

    def k8s_resource(workload="", new_name="", port_forwards=None, extra_pod_selectors=None,
                     trigger_mode=None, resource_deps=None, objects=None, auto_init=True,
                     pod_readiness="", links=None, labels=None, discovery_strategy=""):
        if port_forwards is not None and not isinstance(port_forwards, list):
            port_forwards = [port_forwards]
        record("k8s_resource", workload=workload, new_name=new_name, port_forwards=port_forwards or [],
               resource_deps=list(resource_deps or []), objects=list(objects or []),
               links=list(links or []), labels=[labels] if isinstance(labels, str) else list(labels or []),
               trigger_mode=trigger_mode, auto_init=auto_init)

    def local_resource(name, cmd="", deps=None, trigger_mode=None, resource_deps=None, ignore=None,
                       auto_init=True, serve_cmd="", cmd_bat="", serve_cmd_bat="", allow_parallel=False,
                       links=None, labels=None, env=None, serve_env=None, readiness_probe=None, dir="",
                       serve_dir=""):
        record("local_resource", name=name, cmd=cmd, serve_cmd=serve_cmd,
               deps=[deps] if isinstance(deps, str) else list(deps or []),
               ignore=[ignore] if isinstance(ignore, str) else list(ignore or []),
               resource_deps=list(resource_deps or []),
               labels=[labels] if isinstance(labels, str) else list(labels or []),
               trigger_mode=trigger_mode, auto_init=auto_init)

    def docker_build(ref, context, build_args=None, dockerfile="", dockerfile_contents="",
                     live_update=None, match_in_env_vars=False, ignore=None, only=None, entrypoint=None,
                     target="", ssh="", network="", secret="", extra_tag="", container_args=None,
                     cache_from=None, pull=False, platform="", extra_hosts=None):
        record("docker_build", ref=ref, context=context, dockerfile=dockerfile,
               dockerfile_contents=dockerfile_contents, live_update=list(live_update or []),
               ignore=[ignore] if isinstance(ignore, str) else list(ignore or []),
               only=[only] if isinstance(only, str) else list(only or []),
               entrypoint=entrypoint, target=target, build_args=dict(build_args or {}))

    def sync(local_path, remote_path):
        return {"_step": "sync", "local": local_path, "remote": remote_path}

    def run(cmd, trigger=None, echo_off=False):
        return {"_step": "run", "cmd": cmd, "trigger": [trigger] if isinstance(trigger, str) else list(trigger or [])}

    def fall_back_on(files):
        return {"_step": "fall_back_on", "files": [files] if isinstance(files, str) else list(files)}

    def port_forward(local_port, container_port=None, name=None, link_path=None, host=None):
        return {"local_port": int(local_port), "container_port": int(container_port or local_port),
                "name": name, "link_path": link_path}

    def link(url, name=None):
        return {"url": url, "name": name}

    def update_settings(**kw):
        record("update_settings", **kw)

    def secret_settings(disable_scrub=False):
        record("secret_settings", disable_scrub=disable_scrub)

    # uibutton extension
    def cmd_button(name, argv=None, text=None, location=None, resource=None, icon_name=None,
                   icon_svg=None, inputs=None, requires_confirmation=False, env=None, dir=None):
        if not argv:
            raise TiltfileError(f"cmd_button({name!r}): argv is required")
        record("cmd_button", name=name, argv=list(argv), text=text, location=location, resource=resource,
               icon_name=icon_name, inputs=list(inputs or []), requires_confirmation=requires_confirmation)

    def text_input(name, label="", default="", placeholder=""):
        return {"input": "text", "name": name, "label": label, "default": default}

    def restart_process_wrapped(ref, restart_file):
        rec.restart_wrapped[ref] = restart_file

    tilt = {
        "version_settings": version_settings, "allow_k8s_contexts": allow_k8s_contexts,
        "default_registry": default_registry, "local": local, "watch_file": watch_file,
        "listdir": listdir, "read_yaml": read_yaml, "read_yaml_stream": read_yaml_stream,
        "read_json": read_json, "k8s_yaml": k8s_yaml, "k8s_kind": k8s_kind, "k8s_resource": k8s_resource,
        "local_resource": local_resource, "docker_build": docker_build, "sync": sync, "run": run,
        "fall_back_on": fall_back_on, "port_forward": port_forward, "link": link,
        "update_settings": update_settings, "secret_settings": secret_settings,
    }
    hidden = {"_define_string": define_string, "_define_bool": define_bool,
              "_define_string_list": define_string_list, "_parse": parse, "_getenv": getenv,
              "_join": lambda *p: os.path.join(*p), "_exists": lambda p: path(p).exists(),
              "_basename": os.path.basename, "_dirname": os.path.dirname,
              "_abspath": lambda p: str(path(p).resolve())}
    ext = {"uibutton": {"cmd_button": cmd_button, "text_input": text_input},
           "restart_process": {"_restart_process_wrapped": restart_process_wrapped}}
    return tilt, hidden, ext


_PRELUDE = '''
config = struct(define_string=_define_string, define_bool=_define_bool,
                define_string_list=_define_string_list, parse=_parse, tilt_subcommand=_subcommand)
os = struct(getenv=_getenv, environ={}, name="posix",
            path=struct(join=_join, exists=_exists, basename=_basename, dirname=_dirname, abspath=_abspath))
'''


def evaluate(tiltfile: Path, args: dict | None = None, env: dict | None = None,
             subcommand: str = "up") -> Recording:
    """Evaluate ``tiltfile`` with recording builtins; raise TiltfileError on any error."""
    import starlark as sl

    tiltfile = Path(tiltfile).resolve()
    root = tiltfile.parent
    rec = Recording(root)
    tilt, hidden, ext = _builtins(rec, root, dict(args or {}), dict(env or {}))
    dialect = sl.Dialect.extended()
    glb = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Print,
                                  sl.LibraryExtension.Json])

    def module_with(callables: dict, source: str, name: str):
        m = sl.Module()
        for k, fn in callables.items():
            m.add_callable(k, fn)
        m["_subcommand"] = subcommand
        sl.eval(m, sl.parse(name, source, dialect), glb)
        return m.freeze()

    def loader(module_id: str):
        if module_id == "@tilt//builtins":
            return module_with(hidden, _PRELUDE, module_id)
        if module_id == "ext://uibutton":
            return module_with(ext["uibutton"], "location = struct(NAV='nav', RESOURCE='resource')\n", module_id)
        if module_id == "ext://restart_process":
            return module_with({**tilt, **ext["restart_process"]}, _RESTART_PROCESS, module_id)
        raise TiltfileError(f"load({module_id!r}): no such extension in the offline evaluator "
                            f"(known: ext://uibutton, ext://restart_process)")

    source = tiltfile.read_text()
    lines = source.split("\n")
    # config and os are structs: bring them in on line 1, keeping every line number
    lines[0] = 'load("@tilt//builtins", "config", "os"); ' + lines[0]
    module = sl.Module()
    for k, fn in tilt.items():
        module.add_callable(k, fn)
    module["TRIGGER_MODE_AUTO"] = 0
    module["TRIGGER_MODE_MANUAL"] = 1
    try:
        ast = sl.parse(str(tiltfile.name), "\n".join(lines), dialect)
        sl.eval(module, ast, glb, sl.FileLoader(loader))
    except sl.StarlarkError as e:
        raise TiltfileError(f"{tiltfile.name}: {e}") from None
    except TiltfileError as e:
        raise TiltfileError(f"{tiltfile.name}: {e}") from None
    return rec


def check(tiltfile: Path, args: dict | None = None, env: dict | None = None) -> Recording:
    """Evaluate and apply Tilt's assembly checks; raise TiltfileError naming every problem."""
    rec = evaluate(tiltfile, args, env)
    probs = rec.problems()
    if probs:
        raise TiltfileError(f"{Path(tiltfile).name}: {len(probs)} problem(s) Tilt would reject:\n  - "
                            + "\n  - ".join(probs))
    return rec

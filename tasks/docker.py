"""Container images (#99, #100), the compose stack (#101) and the push to the k3d registry.

``image:<name>`` builds ``docker/<name>.Dockerfile``, one task per Dockerfile there
(:func:`images`: adding ``docker/foo.Dockerfile`` adds ``image:foo`` and ``push:foo``), with the raibid-ci
Cargo workspace (``RAIBID_SRC``) as the build context. The tag is a digest of every
input of the build: the Dockerfile, its ignore file, the target, the platform, the
build args and every file of the context that the ignore file keeps (matched with
Docker's own rules). Same inputs, same tag: the build runs again only when an input
changes (or the image is gone from the engine), and ``build/images/<name>.json``
records what was built. ``push:<name>`` pushes that tag to the k3d registry and records
the reference the cluster pulls in ``build/images/<name>.cluster.json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import time
from typing import NamedTuple
from pathlib import Path

from . import atomic, core, paths, tools

#: the Dockerfile stage the image tasks build (the Tiltfile also uses ``dev`` of the server)
TARGET = "runtime"
#: the platforms the Dockerfiles can build (their cross-compilation table)
PLATFORMS = ("linux/amd64", "linux/arm64")
#: bump when the digest recipe changes, so old tags are never taken for new ones
DIGEST_VERSION = "raibid-image-inputs/1"

core.offline_check("docker:lint", "docker:compose")


class SourceError(Exception):
    """The build context or the build settings are unusable; the message says what to set."""


# --------------------------------------------------------------------------- paths


#: what names a Dockerfile of an image: docker/<name>.Dockerfile
DOCKERFILE_SUFFIX = ".Dockerfile"


def images() -> tuple[str, ...]:
    """The images, sorted: one per ``docker/<name>.Dockerfile``, named by the file's stem.

    The one list of images: the image/push tasks, ``docker:lint``, the deploy's image
    overrides and ``doit up`` read it here (the Tiltfile globs the same directory).
    """
    return tuple(sorted(p.name[: -len(DOCKERFILE_SUFFIX)] for p in paths.docker().glob("*" + DOCKERFILE_SUFFIX)
                        if p.is_file() and len(p.name) > len(DOCKERFILE_SUFFIX)))


def dockerfile(name: str) -> Path:
    return paths.docker() / f"{name}{DOCKERFILE_SUFFIX}"


def ignorefile(name: str) -> Path:
    """BuildKit reads ``<Dockerfile>.dockerignore`` next to the Dockerfile."""
    return paths.docker() / f"{name}.Dockerfile.dockerignore"


def images_dir() -> Path:
    return paths.build() / "images"


def record_path(name: str) -> Path:
    return images_dir() / f"{name}.json"


def cluster_record_path(name: str) -> Path:
    return images_dir() / f"{name}.cluster.json"


def digest_cache_path() -> Path:
    return images_dir() / ".digest-cache.json"


def repository(name: str) -> str:
    return f"raibid-{name}"


# --------------------------------------------------------------------------- the source


def workspace_problem(src: Path) -> str | None:
    """Why ``src`` is not a Cargo workspace, or None when it is one."""
    import tomllib

    if not src.is_dir():
        return "does not exist" if not src.exists() else "is not a directory"
    manifest = src / "Cargo.toml"
    if not manifest.is_file():
        return "has no Cargo.toml"
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return f"has a Cargo.toml that cannot be read ({e})"
    if not isinstance(data.get("workspace"), dict):
        return "has a Cargo.toml without a [workspace] table"
    return None


def source() -> Path:
    """The raibid-ci workspace (``RAIBID_SRC``); :class:`SourceError` with one message if unusable."""
    src = paths.raibid_src()
    problem = workspace_problem(src)
    if problem:
        how = "RAIBID_SRC" if os.environ.get("RAIBID_SRC") else "the default ../raibid-ci (RAIBID_SRC is unset)"
        raise SourceError(
            f"the raibid-ci source {src} {problem}: nothing was built.\n"
            f"  It comes from {how}. Set RAIBID_SRC to the raibid-ci Cargo workspace\n"
            f"  (the directory whose Cargo.toml has a [workspace] table), e.g.\n"
            f"    export RAIBID_SRC=$HOME/src/raibid-ci")
    return src


def host_platform() -> str:
    """The platform of this machine in Docker's notation (the Docker engine runs Linux)."""
    import platform  # ~10 ms of regexes at import: only when a platform is asked for

    arch = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(arch, arch)
    return f"linux/{arch}"


def target_platform() -> str:
    """``RAIBID_PLATFORM`` or the host platform; one of :data:`PLATFORMS`."""
    wanted = os.environ.get("RAIBID_PLATFORM", "").strip()
    plat = wanted or host_platform()
    if plat not in PLATFORMS:
        origin = f"RAIBID_PLATFORM={wanted}" if wanted else f"this machine's platform ({plat})"
        raise SourceError(f"{origin} cannot be built: the Dockerfiles build {' and '.join(PLATFORMS)}.\n"
                          f"  Set RAIBID_PLATFORM to one of them.")
    return plat


def build_args(src: Path) -> dict[str, str]:
    """VERSION, REVISION and SOURCE for the OCI labels.

    VERSION and SOURCE come from ``[workspace.package]`` (version, repository) of the
    workspace, REVISION from its git HEAD; ``RAIBID_IMAGE_VERSION``,
    ``RAIBID_IMAGE_REVISION`` and ``RAIBID_IMAGE_SOURCE`` override them.
    """
    import tomllib

    try:
        package = tomllib.loads((src / "Cargo.toml").read_text(encoding="utf-8"))["workspace"].get("package", {})
    except (OSError, KeyError, AttributeError, tomllib.TOMLDecodeError):
        package = {}
    version = package.get("version") if isinstance(package.get("version"), str) else "0.0.0-dev"
    repo = package.get("repository") if isinstance(package.get("repository"), str) else "unknown"
    return {
        "VERSION": os.environ.get("RAIBID_IMAGE_VERSION") or version,
        "REVISION": os.environ.get("RAIBID_IMAGE_REVISION") or git_revision(src),
        "SOURCE": os.environ.get("RAIBID_IMAGE_SOURCE") or repo,
    }


def git_revision(src: Path) -> str:
    if not (src / ".git").exists():
        return "unknown"
    try:
        proc = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


# --------------------------------------------------------------------------- the context


def ignore_patterns(path: Path) -> list[str]:
    """The patterns of a .dockerignore file, read as Docker reads them."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def context_files(root: Path, patterns: list[str]) -> list[str]:
    """The files (and symlinks) of the build context that ``patterns`` keep, sorted.

    Matching is Docker's own (the ``docker`` package's PatternMatcher, a port of
    moby's), including ``!`` exceptions and ``**``. Directories are walked only when
    a pattern can still re-include something below an excluded one, as Docker does.
    """
    try:
        from docker.utils.build import PatternMatcher
    except ImportError:
        raise SourceError("the Python package `docker` (Docker's .dockerignore matching) is not installed: "
                          "pip install -e .  (or pip install 'docker>=7.1')") from None
    matcher = PatternMatcher(list(patterns))
    root_s = str(root)
    keep = []
    for rel in matcher.walk(root_s):
        full = os.path.join(root_s, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            keep.append(rel.replace(os.sep, "/"))
    keep.sort()
    return keep


class DigestCache:
    """Content hashes of files keyed on (path, size, mtime_ns), kept between runs.

    A file whose mtime is within two seconds of the moment it was hashed is not
    cached (it might change again within the clock's resolution), the rule git uses
    for "racily clean" entries.
    """

    def __init__(self, path: Path):
        self.path = path
        self.changed = False
        try:
            self.entries: dict[str, list] = json.loads(path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}

    def file_hash(self, full: str, st: os.stat_result) -> str:
        hit = self.entries.get(full)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with open(full, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if time.time_ns() - st.st_mtime_ns > 2_000_000_000:
            self.entries[full] = [st.st_size, st.st_mtime_ns, digest]
            self.changed = True
        elif full in self.entries:
            del self.entries[full]
            self.changed = True
        return digest

    def forget_missing(self, root: str, seen: set[str]) -> None:
        prefix = root.rstrip(os.sep) + os.sep
        for key in [k for k in self.entries if k.startswith(prefix) and k not in seen]:
            del self.entries[key]
            self.changed = True

    def save(self) -> None:
        if self.changed:
            atomic.write_text(self.path, json.dumps(self.entries, separators=(",", ":")))
            self.changed = False


def context_digest(root: Path, patterns: list[str], cache: DigestCache | None = None) -> str:
    """sha256 over the kept files of ``root``: path, executable bit and content (or link target)."""
    cache = cache or DigestCache(digest_cache_path())
    root_s = str(root)
    h = hashlib.sha256()
    seen = set()
    for rel in context_files(root, patterns):
        full = os.path.join(root_s, rel)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            h.update(f"L {rel}\0{os.readlink(full)}\n".encode())
            continue
        seen.add(full)
        mode = "x" if st.st_mode & 0o111 else "-"
        h.update(f"F {rel}\0{mode}\0{cache.file_hash(full, st)}\n".encode())
    cache.forget_missing(root_s, seen)
    cache.save()
    return h.hexdigest()


def _file_sha(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "-"


class ImageInputs(NamedTuple):
    """Everything a build of one image depends on, and the tag derived from it."""

    name: str
    context: Path
    dockerfile: Path
    target: str
    platform: str
    build_args: tuple[tuple[str, str], ...]
    digest: str

    @property
    def tag(self) -> str:
        return f"{repository(self.name)}:{self.digest[:12]}"


def image_inputs(name: str, cache: DigestCache | None = None) -> ImageInputs:
    """The inputs of ``image:<name>`` and their digest (:class:`SourceError` if unusable)."""
    src = source()
    plat = target_platform()
    args = build_args(src)
    df, ign = dockerfile(name), ignorefile(name)
    h = hashlib.sha256()
    h.update(f"{DIGEST_VERSION}\nname {name}\ntarget {TARGET}\nplatform {plat}\n".encode())
    h.update(f"dockerfile {_file_sha(df)}\ndockerignore {_file_sha(ign)}\n".encode())
    for k in sorted(args):
        h.update(f"arg {k}={args[k]}\n".encode())
    h.update(f"context {context_digest(src, ignore_patterns(ign), cache)}\n".encode())
    return ImageInputs(name, src, df, TARGET, plat, tuple(sorted(args.items())), h.hexdigest())


# --------------------------------------------------------------------------- docker


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def engine_problem(verb: str):
    """A TaskFailed naming the cause when the docker client has no engine (as the `doit up`
    preflight does), else None: otherwise docker's own first complaint (e.g. "the buildx
    component is missing") hides it."""
    from doit.exceptions import TaskFailed

    problem = tools.live_problem(tools.TOOLS["docker"])
    return TaskFailed(f"docker: {problem}: nothing was {verb}.") if problem else None


def buildx_available() -> bool:
    """True when ``docker buildx version`` works (then builds use ``buildx build --load``)."""
    try:
        return _docker("buildx", "version", timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def build_command(inp: ImageInputs, buildx: bool) -> tuple[list[str], dict | None]:
    """The argv (and environment, for the classic CLI) that builds ``inp``."""
    if buildx:
        argv, env = ["docker", "buildx", "build", "--load"], None
    else:
        argv, env = ["docker", "build"], dict(os.environ, DOCKER_BUILDKIT="1")
    argv += ["-f", str(inp.dockerfile), "--target", inp.target, "--platform", inp.platform]
    if network := os.environ.get("RAIBID_BUILD_NETWORK", "").strip():
        # an engine without a bridge network (the tests' private one) builds with the host's
        argv += ["--network", network]
    for key, value in inp.build_args:
        argv += ["--build-arg", f"{key}={value}"]
    argv += ["-t", inp.tag, str(inp.context)]
    return argv, env


def image_id(ref: str) -> str | None:
    """The engine's image ID for ``ref``, or None when it has no such image."""
    if tools.which("docker") is None:
        return None
    try:
        proc = _docker("image", "inspect", "--format", "{{.Id}}", ref)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


#: inputs computed by the up-to-date check, reused by the build in the same run
_checked: dict[str, ImageInputs] = {}


def image_current(name: str) -> bool:
    """doit uptodate: the record matches the current inputs and the engine still has the image."""
    if tools.which("docker") is None:
        return False  # the task's tool check then stops it, before anything is written
    try:
        inp = image_inputs(name)
    except SourceError:
        return False  # the build action then stops with the message
    _checked[name] = inp
    rec = read_json(record_path(name))
    if not rec or rec.get("digest") != inp.digest or rec.get("tag") != inp.tag:
        return False
    found = image_id(inp.tag)
    return found is not None and found == rec.get("image_id")


def _run_echoed(argv, env) -> tuple[int, list[str]]:
    """Run ``argv``, echoing its output as it comes; (exit code, its last lines)."""
    from collections import deque

    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail.append(line.rstrip("\n"))
    return proc.returncode, list(tail)


#: (what a failed build's output says, the one line naming the cause); first match wins
_BUILD_CAUSES = (
    (r"network bridge not found",
     "the engine has no bridge network for the build's RUN steps: set RAIBID_BUILD_NETWORK=host"),
    (r"Temporary failure resolving|Could not resolve|i/o timeout|connection refused"
     r"|Network is unreachable|failed to download|spurious network error",
     "a RUN step could not reach the network (Debian's mirror or crates.io): check the "
     "engine's network, proxy and DNS"),
)
_FRONTEND = "the Dockerfile frontend {0} (a `# syntax=` line) cannot be pulled: drop the line " \
            "(docker/README.md, \"Frontend\") or make the registry reachable"
_BASE = "the base image {0} cannot be pulled: is its registry reachable (or the image loaded)?"


def build_failure_cause(lines: list[str]) -> str:
    """One line saying why a build failed, from its output (BuildKit's numbered steps): an
    image that cannot be pulled (the frontend or a base), then :data:`_BUILD_CAUSES`, else
    the last error line."""
    import re

    titles, failed = {}, []
    for ln in lines:
        if m := re.match(r"#(\d+) ERROR: (.*)", ln):
            failed.append(m.group(1))
        elif m := re.match(r"#(\d+) (\S.*)", ln):
            titles.setdefault(m.group(1), m.group(2))
    for step in failed:
        title = titles.get(step, "")
        if m := re.search(r"(?:resolve image config|load metadata) for (\S+)", title):
            return (_FRONTEND if "resolve image config" in m.group(0) else _BASE).format(m.group(1))
    text = "\n".join(lines)
    for pattern, cause in _BUILD_CAUSES:
        if re.search(pattern, text):
            return cause
    errors = [ln.strip() for ln in lines if re.match(r"\s*(?:#\d+ )?(?:ERROR|error)\b", ln)]
    return errors[-1] if errors else "see the build output above"


def build_image(name: str):
    """doit action: build the image, then record name, tag, image id, digest and platform."""
    from doit.exceptions import TaskFailed

    try:
        inp = _checked.pop(name, None) or image_inputs(name)
    except SourceError as e:
        return TaskFailed(str(e))
    if no_engine := engine_problem("built"):
        return no_engine
    argv, env = build_command(inp, buildx_available())
    print(f"building {inp.tag} ({inp.platform}, target {inp.target}) from {inp.context}", flush=True)
    returncode, tail = _run_echoed(argv, env)
    if returncode != 0:
        return TaskFailed(f"docker build of {inp.tag} failed (exit {returncode}): "
                          f"{build_failure_cause(tail)}\n  {shlex.join(argv)}")
    found = image_id(inp.tag)
    if not found:
        return TaskFailed(f"docker build reported success but the engine has no image {inp.tag}")
    # only this image's leftovers: another image's build or push may be writing beside it
    atomic.sweep_stale_temps(images_dir(), owners=[record_path(name).name])
    atomic.write_text(record_path(name), json.dumps({
        "name": name, "tag": inp.tag, "image_id": found, "digest": inp.digest, "platform": inp.platform,
    }, indent=2) + "\n")
    print(f"{name}: {inp.tag} {found}")
    return None


def cluster_ref(name: str, rec: dict) -> tuple[str, str]:
    """(the reference the host pushes, the reference the cluster pulls) for a build record.
    Raises :class:`tasks.settings.SettingsError` (naming deploy.json's line and the fix) when
    the registry settings cannot be read."""
    from .settings import current

    settings = current()
    return f"{settings.registry_push}/{rec['tag']}", f"{settings.registry_pull}/{rec['tag']}"


def pushed_current(name: str) -> bool:
    """doit uptodate: the cluster record names the current tag in the current registry, and
    the registry still holds it (asked live: a recreated k3d registry is empty)."""
    rec = read_json(record_path(name))
    pushed = read_json(cluster_record_path(name))
    if not rec or not pushed or "tag" not in rec:
        return False
    from .settings import SettingsError

    try:
        push_ref, pull_ref = cluster_ref(name, rec)
    except SettingsError:
        return False  # the push action then stops with the message
    if pushed.get("ref") != pull_ref:
        return False
    try:
        return _docker("manifest", "inspect", "--insecure", push_ref).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def push_image(name: str):
    """doit action: tag and push the built image to the k3d registry, record the cluster's ref."""
    from doit.exceptions import TaskFailed

    if no_engine := engine_problem("pushed"):
        return no_engine
    rec = read_json(record_path(name))
    if not rec or "tag" not in rec:
        return TaskFailed(f"{paths.rel(record_path(name))} is missing or unreadable: run `doit image:{name}`")
    from .settings import SettingsError

    try:
        push_ref, pull_ref = cluster_ref(name, rec)
    except SettingsError as e:
        return TaskFailed(f"{e}\nnothing was pushed.")
    for args in (("tag", rec["tag"], push_ref), ("push", push_ref)):
        print(f"docker {' '.join(args)}", flush=True)
        proc = subprocess.run(["docker", *args])
        if proc.returncode != 0:
            hint = "  Is the k3d registry running? `doit cluster` starts it." if args[0] == "push" else ""
            return TaskFailed(f"`docker {' '.join(args)}` failed (exit {proc.returncode}).{hint}")
    atomic.sweep_stale_temps(images_dir(), owners=[cluster_record_path(name).name])
    atomic.write_text(cluster_record_path(name), json.dumps({"name": name, "ref": pull_ref}, indent=2) + "\n")
    return None


# --------------------------------------------------------------------------- checks


def hadolint_config() -> Path:
    return paths.root() / ".hadolint.yaml"


def lint_dockerfiles():
    """doit action: hadolint every Dockerfile with the project's configuration."""
    from doit.exceptions import TaskFailed

    files = [dockerfile(n) for n in images()]
    argv = ["hadolint", "--no-color", "--config", str(hadolint_config()), *map(str, files)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        return TaskFailed(f"hadolint found problems (config {paths.rel(hadolint_config())}):\n{out}")
    print(f"hadolint: {', '.join(paths.rel(f) for f in files)} clean")
    return None


def compose_file() -> Path:
    return paths.docker() / "compose.yaml"


def compose_env_example() -> Path:
    return paths.docker() / ".env.example"


def compose_cli_works() -> bool:
    """True when ``docker compose version`` runs (the Compose v2 plugin is installed)."""
    if tools.which("docker") is None:
        return False
    try:
        return _docker("compose", "version", timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_compose():
    """doit action: validate docker/compose.yaml offline (schema, references, and the CLI if any)."""
    from doit.exceptions import TaskFailed

    from .compose import ComposeError, validate

    path, env_file = compose_file(), compose_env_example()
    try:
        validate(path, env_file)
    except ComposeError as e:
        return TaskFailed(str(e))
    print(f"{paths.rel(path)}: valid against the compose-spec schema")
    if compose_cli_works():
        argv = ["docker", "compose", "-f", str(path), "--env-file", str(env_file), "config", "--quiet"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            return TaskFailed(f"{paths.rel(path)}: `docker compose config` rejects it:\n"
                              f"{(proc.stderr or proc.stdout).strip()}")
        print(f"{paths.rel(path)}: `docker compose config` accepts it")
    else:
        print("(no working `docker compose` here: the schema check is the whole check)")
    return None


# --------------------------------------------------------------------------- task creators


def task_image():
    """Build the images of docker/*.Dockerfile (tag = digest of Dockerfile, build args and context)."""
    for name in images():
        yield tools.needs({
            "name": name,
            "doc": f"Build raibid-{name} from docker/{name}.Dockerfile (context: RAIBID_SRC); "
                   f"skipped while its inputs are unchanged",
            "actions": [(build_image, [name])],
            "uptodate": [(image_current, [name])],
            "targets": [record_path(name)],
            "clean": True,
            "verbosity": 2,
        }, "docker")


def task_push():
    """Push the built images to the k3d registry and record the refs the cluster pulls."""
    for name in images():
        yield tools.needs({
            "name": name,
            "doc": f"Push raibid-{name} to the k3d registry; writes build/images/{name}.cluster.json",
            "actions": [(push_image, [name])],
            "file_dep": [record_path(name)],
            "uptodate": [(pushed_current, [name])],
            "targets": [cluster_record_path(name)],
            "clean": True,
            "verbosity": 2,
        }, "docker")


def task_docker():
    """Check the Dockerfiles (hadolint) and the compose file (offline)."""
    yield tools.needs({
        "name": "lint",
        "doc": "Lint every docker/*.Dockerfile with hadolint (.hadolint.yaml)",
        "actions": [lint_dockerfiles],
        "file_dep": [dockerfile(n) for n in images()] + [hadolint_config()],
    }, "hadolint")
    yield {
        "name": "compose",
        "doc": "Validate docker/compose.yaml offline: compose-spec schema, references, `docker compose config` when present",
        "actions": [check_compose],
        "file_dep": [compose_file(), compose_env_example()],
    }


__all__ = ["task_image", "task_push", "task_docker", "images", "TARGET", "image_inputs",
           "context_files", "context_digest", "ignore_patterns", "DigestCache", "SourceError"]

"""A real Docker engine for the image tests (#20), and the stand-in images they build on.

The engine is the user's when one answers (``docker info``), else a private ``dockerd``
started once per test session: its own socket, exec root and pidfile, its data root under
:data:`CACHE` (so image layers and BuildKit's cache survive between runs), no bridge network
and no iptables rules (nothing it runs is routed anywhere; builds use the host's network
through ``RAIBID_BUILD_NETWORK=host``, which reaches only what the Dockerfiles fetch:
Debian's mirror and crates.io). It is stopped by its pid when the session ends, or by a
watcher once the test process has gone.

Docker Hub cannot be reached here, so the images the Dockerfiles name are STAND-INS made
offline from Debian's packages and this machine's Rust toolchain, for the tests only (a
user's build pulls the real ones): see :func:`ensure_standins`.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

#: persistent, per user: the private engine's data root and the stand-ins' rootfs cache
CACHE = Path(os.environ.get("RAIBID_TEST_CACHE") or Path.home() / ".cache" / "raibid-deploy")
#: the plugins the tests give the docker client (built by `doit tools images`)
PLUGINS = ("docker-buildx", "docker-compose")
#: bump when a stand-in's recipe changes: its images are then made again
STANDIN_RECIPE = "raibid-test-standin/1"
STANDIN_LABEL = "org.raibid.test-standin"
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class Engine(NamedTuple):
    """An engine the tests talk to: the environment that reaches it, and our dockerd's pid
    (None for the user's engine)."""

    env: dict
    pid: int | None
    root: Path | None

    def docker(self, *args: str, check: bool = True, timeout: float = 600, **kw):
        env = {**os.environ, **kw.pop("env", {}), **self.env}
        proc = subprocess.run(["docker", *args], env=env, text=True, capture_output=True,
                              timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


def docker_config(directory: Path, tools_bin: Path) -> Path:
    """A DOCKER_CONFIG whose cli-plugins are the pinned buildx and compose (a user's own
    ~/.docker is never touched)."""
    plugins = directory / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for name in PLUGINS:
        link, exe = plugins / name, tools_bin / name
        if exe.is_file() and not link.exists():
            link.symlink_to(exe)
    return directory


def _answers(env: dict) -> str | None:
    """The server version of the engine ``env`` reaches, or None."""
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], text=True,
                              env={**os.environ, **env}, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out and "Cannot connect" not in out else None


def _locked(path: Path):
    """An exclusive lock on ``path``, or None when another session holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def start(config: Path, log_dir: Path) -> tuple[Engine, object]:
    """The user's engine if one answers, else a private dockerd; (engine, its lock or None)."""
    base = {"DOCKER_CONFIG": str(config)}
    if shutil.which("dockerd") is None or os.environ.get("DOCKER_HOST"):
        # no dockerd to start (or the user named an engine): theirs or nothing
        return Engine(base, None, None), None
    if _answers(base):
        return Engine(base, None, None), None
    root = CACHE / "dockerd"
    lock = _locked(root / "lock")
    if lock is None:  # another session's engine owns the persistent root: a cold one of our own
        root = Path(tempfile.mkdtemp(prefix="raibid-dockerd-", dir=log_dir))
    # the exec root holds containerd's sockets: a short path (unix sockets are <= 107 bytes)
    exec_root = Path(tempfile.mkdtemp(prefix="raibid-dockerd-"))
    sock = exec_root / "docker.sock"
    argv = ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(exec_root),
            "--pidfile", str(exec_root / "dockerd.pid"), "--host", f"unix://{sock}",
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--containerd-namespace", "raibid-test", "--containerd-plugins-namespace",
            "raibid-test-plugins"]
    log = open(log_dir / "dockerd.log", "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    log.close()
    _stop_when_gone(os.getpid(), proc.pid)
    env = {**base, "DOCKER_HOST": f"unix://{sock}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sock.exists() and _answers(env):
            return Engine(env, proc.pid, exec_root), lock
        time.sleep(0.2)
    stop(Engine(env, proc.pid, exec_root))
    raise RuntimeError(f"dockerd did not answer within 60 s: see {log_dir / 'dockerd.log'}")


def stop(engine: Engine) -> None:
    """Stop our dockerd (it stops its containers and its containerd), by its pid."""
    if engine.pid is None:
        return
    _terminate(engine.pid)
    if engine.root is not None:
        shutil.rmtree(engine.root, ignore_errors=True)


def _terminate(pid: int, grace: float = 30) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (the watcher): poll for it
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            done = 0
        if done:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


_WATCHER = """
import os, sys, time
sys.path.insert(0, sys.argv[3])
import engine
parent, pid = int(sys.argv[1]), int(sys.argv[2])
while True:
    try:
        os.kill(parent, 0)
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
engine._terminate(pid)
"""


def _stop_when_gone(parent: int, pid: int) -> None:
    """Stop dockerd ``pid`` once the test process has gone, even when pytest is killed."""
    subprocess.Popen([sys.executable, "-c", _WATCHER, str(parent), str(pid),
                      str(Path(__file__).parent)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------- stand-ins


def dockerfile_arg(name: str) -> str:
    """The default of ``ARG <name>`` in docker/*.Dockerfile (one value for all of them)."""
    import re

    found = {m for f in (Path(__file__).parent.parent / "docker").glob("*.Dockerfile")
             for m in re.findall(rf"^ARG {name}=(\S+)", f.read_text(), re.M)}
    assert len(found) == 1, f"ARG {name}: {found or 'not found'} in docker/*.Dockerfile"
    return found.pop()


class Standin(NamedTuple):
    ref: str        # the real name the Dockerfiles use
    replaces: str   # what the real image is


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


def _debian_key() -> str:
    return _sha(STANDIN_RECIPE, "debian", DEBIAN_SUITE, DEBIAN_MIRROR, _file_sha(HOST_CA))


def _label(engine: Engine, ref: str) -> str | None:
    """None: no such image; "": an image of that name that is not our stand-in (a real one)."""
    proc = engine.docker("image", "inspect", "--format",
                         f'{{{{index .Config.Labels "{STANDIN_LABEL}"}}}}', ref, check=False)
    if proc.returncode != 0:
        return None
    out = proc.stdout.strip()
    return "" if out in ("", "<no value>") else out


def _run(argv, **kw):
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def _rootfs(key: str) -> Path:
    """Debian's minbase of :data:`DEBIAN_SUITE` (debootstrap), cached as a tarball by recipe."""
    tarball = CACHE / "standins" / f"debian-{DEBIAN_SUITE}-{key[:16]}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        root = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(root), DEBIAN_MIRROR])
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk / "partial").mkdir(parents=True)
        # TLS is intercepted on these machines: the host's bundle is the image's trust
        # store, and stays it when a Dockerfile installs ca-certificates (a local CA)
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA, root / "etc/ssl/certs/ca-certificates.crt")
        (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA, root / "usr/local/share/ca-certificates/raibid-test-host.crt")
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", f"{tmp}/rootfs.tar", "."])
        os.replace(f"{tmp}/rootfs.tar", tarball)
    return tarball


def _import(engine: Engine, tar: Path, ref: str, key: str, changes: list[str]) -> None:
    argv = ["import"]
    for c in [f"LABEL {STANDIN_LABEL}={key}", *changes]:
        argv += ["--change", c]
    engine.docker(*argv, str(tar), ref)


def _toolchain() -> tuple[Path, Path, str]:
    """(this machine's rustup toolchain dir, its rustup binary, rustc's version)."""
    rustc = Path(_run(["rustup", "which", "rustc"]).stdout.strip()).resolve()
    version = _run([str(rustc), "--version"]).stdout.split()[1]
    rustup = Path(shutil.which("rustup")).resolve()
    return rustc.parent.parent, rustup, version


def ensure_standins(engine: Engine, rust_version: str, suite: str = DEBIAN_SUITE) -> list[Standin]:
    """Make sure the engine has every base image docker/*.Dockerfile names, under its real
    name: the real one when the engine has it, else our stand-in, made when its recipe (and
    its inputs: the host CA bundle, the toolchain's version) changed:

    - ``docker.io/library/debian:<suite>-slim``: ``debootstrap --variant=minbase`` from
      Debian's mirror, imported;
    - ``docker.io/library/rust:<ver>-slim-<suite>``: that rootfs plus gcc and libc6-dev
      (Debian's, installed in a chroot) and this machine's toolchain (rustc, cargo, rust-std,
      clippy, rustfmt) in the official image's layout (/usr/local/rustup, /usr/local/cargo,
      RUSTUP_HOME, CARGO_HOME, PATH).
    """
    assert suite == DEBIAN_SUITE
    made = []
    base_key = _debian_key()
    debian = f"docker.io/library/debian:{suite}-slim"
    found = _label(engine, debian)
    tarball = None
    if found is None or (found and found != base_key):
        tarball = _rootfs(base_key)
        _import(engine, tarball, debian, base_key, ['CMD ["bash"]'])
    made.append(Standin(debian, f"Debian's official {suite}-slim image"))

    tc_dir, rustup, version = _toolchain()
    if not version.startswith(rust_version):
        raise RuntimeError(f"the Dockerfiles want Rust {rust_version}; this machine's toolchain "
                           f"is {version}: the rust stand-in is made from it")
    rust_key = _sha(base_key, "rust", version, _file_sha(tc_dir / "lib/rustlib/components"))
    rust = f"docker.io/library/rust:{rust_version}-slim-{suite}"
    found = _label(engine, rust)
    if found is None or (found and found != rust_key):
        _make_rust(engine, tarball or _rootfs(base_key), rust, rust_key, tc_dir, rustup, version)
    made.append(Standin(rust, f"the official Rust {rust_version} slim {suite} image"))
    return made


def _derived(engine, tarball, ref, key, packages, changes, fill=None) -> None:
    """Import ``ref``: the rootfs of ``tarball`` plus Debian's ``packages`` (installed in a
    chroot, with the host's network) and whatever ``fill(root)`` adds."""
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        _run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)])
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        _run(["chroot", str(root), "apt-get", "update", "-qq"])
        _run(["chroot", str(root), "apt-get", "install", "-y", "-qq", "--no-install-recommends",
              *packages], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk / "partial").mkdir(parents=True)
        if fill:
            fill(root)
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", f"{tmp}/image.tar", "."])
        _import(engine, Path(f"{tmp}/image.tar"), ref, key, changes)


def _make_rust(engine, tarball, ref, key, tc_dir, rustup, version) -> None:
    triple = tc_dir.name.split("-", 1)[1]
    name = f"{version}-{triple}"

    def toolchain(root: Path) -> None:
        rustup_home, cargo_home = root / "usr/local/rustup", root / "usr/local/cargo"
        shutil.copytree(tc_dir, rustup_home / "toolchains" / name, symlinks=True,
                        ignore=lambda d, names: ["doc"] if d.endswith("/share") else [])
        (rustup_home / "settings.toml").write_text(
            f'version = "12"\ndefault_toolchain = "{name}"\nprofile = "minimal"\n')
        (cargo_home / "bin").mkdir(parents=True)
        shutil.copy2(rustup, cargo_home / "bin/rustup")
        for proxy in ("cargo", "rustc", "rustdoc", "rust-gdb", "rust-lldb", "cargo-clippy",
                      "clippy-driver", "rustfmt", "cargo-fmt"):
            os.link(cargo_home / "bin/rustup", cargo_home / "bin" / proxy)

    _derived(engine, tarball, ref, key, ["ca-certificates", "gcc", "libc6-dev"], [
        "ENV RUSTUP_HOME=/usr/local/rustup", "ENV CARGO_HOME=/usr/local/cargo",
        "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
        "/sbin:/bin", f"ENV RUST_VERSION={version}", 'CMD ["bash"]'], toolchain)


def ensure_redis(engine: Engine, ref: str) -> Standin:
    """``ref`` (compose.yaml's Redis image) as Debian's redis-server and redis-tools on the
    Debian stand-in's rootfs: the compose file runs ``redis-server`` and ``redis-cli``."""
    base_key = _debian_key()
    key = _sha(base_key, "redis", ref)
    found = _label(engine, ref)
    if found is None or (found and found != key):
        _derived(engine, _rootfs(base_key), ref, key, ["redis-server", "redis-tools"],
                 ["WORKDIR /data", "EXPOSE 6379", 'CMD ["redis-server"]'],
                 lambda root: (root / "data").mkdir(exist_ok=True))
    return Standin(ref, "the official Redis image (Debian's redis-server)")

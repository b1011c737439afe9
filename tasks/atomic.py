"""Atomic outputs: an interrupted run never leaves a half-written output behind.

Everything is written into a temporary sibling first and renamed into place only once
it is complete, so a later run either sees the previous complete output or the new
complete output, never a mix. doit records a task as done only after its actions
succeed, so an interrupted task also runs again next time.
"""
from __future__ import annotations

import contextlib
import os
import stat
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def write_text(path: Path, text: str, mode: int | None = None, durable: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same dir, then rename)."""
    write_bytes(path, text.encode(), mode=mode, durable=durable)


def write_bytes(path: Path, data: bytes, mode: int | None = None, durable: bool = True) -> None:
    """Write ``data`` atomically. ``mode`` (e.g. 0o600 for a secret) is the file's mode from
    its creation on; without it a replaced file keeps its mode, a new one gets the umask's.
    ``durable=False`` skips the flush to disk before the rename: for caches, whose entry a
    crash may lose (it is computed again) but never leave half-written to a running reader."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600: it is never more open than ``mode`` while written
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode(path, 0o666) if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a full disk: say which file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


@contextlib.contextmanager
def replace_dir(target: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``target`` on success.

    On an exception (or KeyboardInterrupt) the temporary directory is removed and
    ``target`` is left exactly as it was. ``mode`` (e.g. 0o700) is the directory's mode
    from its creation on (mkdtemp makes it 0700).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, _mode(target, 0o777) if mode is None else mode)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old.{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _mode(existing: Path, default: int) -> int:
    """Keep the mode of the file being replaced; a new one gets the usual umask'd mode."""
    try:
        return stat.S_IMODE(existing.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return default & ~umask


def private_dir(directory: Path) -> bool:
    """Make ``directory`` owner-only: created 0700 (missing parents too), or set to 0700 when
    it exists with group or other bits. True when it existed open (it was written by an older
    version, or by another umask: what it holds may have been readable by others)."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        private_dir(directory.parent)
    try:
        os.mkdir(directory, 0o700)  # the umask can only take bits away
        return False
    except FileExistsError:
        pass
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        os.chmod(directory, 0o700)
        return True
    return False


@contextlib.contextmanager
def locked(directory: Path, waiting=None) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (flock on the directory itself, no lock file
    to leave behind): concurrent runs that create the same output take turns. ``waiting()``
    is called when another holds it, before waiting for it (to say why nothing happens)."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if waiting else 0))
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def child_setup(umask: int | None = None):
    """A ``preexec_fn`` for subprocesses that write outputs: the child is killed when the
    doit process that started it dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``), so no
    orphan keeps writing; ``umask`` (e.g. 0o077) applies to every file it creates."""
    import signal

    parent = os.getpid()
    try:  # looked up here: the child, forked from a process with threads, only calls it
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None  # not Linux: the child outlives a killed doit, as before

    def setup():
        if umask is not None:
            os.umask(umask)
        if prctl is not None:
            prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # doit died before prctl took effect
                os._exit(1)

    return setup


def sweep_stale_temps(parent: Path, owners=None) -> None:
    """Remove temporary siblings left behind by a run that was killed (SIGKILL): those of
    the outputs named ``owners`` only (:func:`write_bytes`'s ``.<name>.XXXXXXXX.tmp``,
    :func:`replace_dir`'s ``.<name>.XXXXXXXX.tmp`` and ``.<name>.old.<pid>``), so a writer
    that holds the lock of its own outputs never sweeps what another writer is writing in
    ``parent``; without ``owners``, every one in ``parent``."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    own = None
    if owners is not None:
        import re

        names = "|".join(re.escape(n) for n in owners)
        own = re.compile(rf"\.(?:{names})\.(?:\w{{8}}\.tmp|old\.\d+)")
    for entry in parent.iterdir():
        if own.fullmatch(entry.name) if own else (
                entry.name.startswith(".") and (entry.name.endswith(".tmp") or ".old." in entry.name)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

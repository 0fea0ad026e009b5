"""The report directory: where a run's files go, and how they are written and cleaned.

Paths (issue 13, "No escapes"; issue 15, "Outputs that can be trusted"):

- A property's trace files are `DIR/<file>/<name>.<suffix>`, where `<file>` mirrors the
  property file's path relative to the working directory, folder by folder, with its
  `.toml` (`a/kexec_crash.toml` -> `DIR/a/kexec_crash.toml/NAME.json`), so two files of
  the same name in different folders never share traces. A file outside the working
  directory is mirrored by its absolute path under the folder `%2F` (an encoded `/`).
- Every component is `safe_component(text)`: one-to-one, never empty, `.`, `..` or
  hidden, never holding a separator, a colon or a control character, and at most
  `MAX_COMPONENT` bytes (a longer one is shortened deterministically). The joined path is
  checked to stay inside the report directory.

Writing (`ReportDir`): a folder or file on the way that is a symbolic link is replaced,
never followed (a regular file where a folder should be is an error, never deleted);
each file is written to a temporary file beside it and renamed into place, so a reader
(or an interrupted run) never sees half a file. A write that fails is recorded as a
problem and the rest go on.

Ownership: the run records what it wrote in `DIR/irq-checker-manifest.json`; at the end
it removes what the previous run's manifest lists and this run did not write (stale
traces, an `index.html` of a run with `--html`, a JUnit file that was written inside DIR),
then the folders that leaves empty. Nothing that is not in a manifest is removed, except
an `index.html` this tool generated before manifests existed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import string
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

MANIFEST = "irq-checker-manifest.json"
INDEX = "index.html"  # the HTML report's page (checker.html)
TOOL = "irq-checker"
# Bytes of one component: file systems allow 255; this leaves room for a suffix
# (`.itf.json`) and keeps deep trees under PATH_MAX.
MAX_COMPONENT = 120
HASH_CHARS = 16
# The first component of a property file outside the working directory: `%2F` is what
# `/` encodes to, and no name encodes to it (a `%` in a name becomes `%25`).
OUTSIDE = "%2F"
EMPTY = "%empty"  # the empty name (no escape is `%e...`)
_SAFE = frozenset(string.ascii_letters + string.digits + "-_.+=@,")
# An index.html written before manifests: removed by a run without --html.
_OUR_INDEX = "<title>irq-checker report</title>"


def _bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # undecodable bytes of a file name
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def safe_component(text: str) -> str:
    """`text` as one file or folder name: characters outside letters, digits and `-_.+=@,`
    (and a leading `.`) become `%XX` per UTF-8 byte, so the mapping is one-to-one. A
    result longer than MAX_COMPONENT keeps its start and ends with `~` and a hash of the
    whole text (deterministic; an encoded name never holds `~`)."""
    if not text:
        return EMPTY
    encoded = "".join(
        ch if ch in _SAFE else "".join(f"%{b:02X}" for b in _bytes(ch)) for ch in text
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) <= MAX_COMPONENT:
        return encoded
    digest = hashlib.sha256(_bytes(text)).hexdigest()[:HASH_CHARS]
    keep = encoded[: MAX_COMPONENT - HASH_CHARS - 1]
    cut = keep.rfind("%", len(keep) - 2)
    if cut >= 0:  # do not split an escape
        keep = keep[:cut]
    return f"{keep}~{digest}"


def file_parts(file: str) -> tuple[str, ...]:
    """The components that mirror a property file's path (relative to the working
    directory, else absolute under OUTSIDE)."""
    path = PurePosixPath(Path(os.path.abspath(file)).as_posix())
    cwd = PurePosixPath(Path(os.path.abspath(os.getcwd())).as_posix())
    if path.is_relative_to(cwd) and path != cwd:
        return tuple(safe_component(p) for p in path.relative_to(cwd).parts)
    return (OUTSIDE, *(safe_component(p) for p in path.parts[1:]))


def relative_file(path: str) -> str:
    """A property or design file as a POSIX path relative to the working directory when
    it is inside it, else as given."""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(Path(os.path.abspath(os.getcwd()))).as_posix()
    except ValueError:
        return Path(path).as_posix()


def report_parts(file: str, name: str) -> tuple[str, ...]:
    """Where property `name` of `file` puts its trace files, as components below the
    report directory (the last one is the base name, without a suffix)."""
    return (*file_parts(file), safe_component(name))


def _valid(parts: Sequence[str]) -> bool:
    return bool(parts) and all(
        p not in ("", ".", "..") and "/" not in p and "\0" not in p and os.sep not in p
        for p in parts
    )


def inside(root: Path, parts: Sequence[str]) -> Path:
    """root/parts, checked to stay inside root (ValueError otherwise)."""
    if not _valid(parts):
        raise ValueError(f"not a path inside the report directory: {'/'.join(parts)!r}")
    base = os.path.abspath(root)
    joined = os.path.normpath(os.path.join(base, *parts))
    if os.path.commonpath([base, joined]) != base or joined == base:
        raise ValueError(f"not a path inside the report directory: {'/'.join(parts)!r}")
    return root.joinpath(*parts)


class ReportDir:
    """A run's report directory: safe writes, a record of them, and the manifest."""

    def __init__(self, root: Path):
        self.root = root
        self.written: list[str] = []  # relative POSIX paths, in writing order
        self.problems: list[str] = []  # why a write failed, one line each
        self.ready: bool | None = None  # the root exists (None: not tried yet)

    # -- writing -------------------------------------------------------------------------
    def path(self, parts: Sequence[str]) -> Path:
        return inside(self.root, parts)

    def relative(self, path: Path | str) -> tuple[str, ...] | None:
        """`path`'s components below the root, when it is inside (without resolving
        links: a link inside is replaced when written)."""
        full = os.path.normpath(os.path.abspath(path))
        base = os.path.normpath(os.path.abspath(self.root))
        if os.path.commonpath([base, full]) != base or full == base:
            return None
        parts = tuple(Path(os.path.relpath(full, base)).parts)
        return parts if _valid(parts) else None

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def _root_ready(self) -> bool:
        if self.ready is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self.ready = self.root.is_dir()
                if not self.ready:
                    self._problem(f"cannot write reports to {self.root}: not a folder")
            except OSError as exc:
                self._problem(f"cannot write reports to {self.root}: {_reason(exc)}")
                self.ready = False
        return self.ready

    def write(self, parts: Sequence[str], fill: Callable[[Path], object]) -> Path | None:
        """Write root/parts by calling `fill(path)` on a temporary file in its folder,
        then renaming it into place; None (and a problem recorded) when that fails."""
        try:
            target = self.path(parts)
        except ValueError as exc:
            self._problem(f"cannot write reports to {self.root}: {exc}")
            return None
        if not self._root_ready():
            return None
        try:
            folder = self._folders(parts[:-1])
            write_replacing(folder / parts[-1], fill)
        except OSError as exc:
            self._problem(f"cannot write reports to {self.root}: {_reason(exc)}")
            return None
        except Exception as exc:  # a writer that failed: its file is lost, not the run
            self._problem(f"cannot write reports to {self.root}: {target}: "
                          f"{type(exc).__name__}: {exc}")
            return None
        self.written.append("/".join(parts))
        return target

    def write_text(self, parts: Sequence[str], text: str) -> Path | None:
        return self.write(parts, lambda path: path.write_text(text, encoding="utf-8"))

    def _folders(self, parts: Sequence[str]) -> Path:
        """Make root/parts a chain of real folders: a symbolic link in the way is
        removed first (never followed); anything else that is not a folder is an error
        (a file is never deleted to make room)."""
        folder = self.root
        for part in parts:
            folder = folder / part
            try:
                mode: int | None = os.lstat(folder).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and stat.S_ISLNK(mode):
                os.unlink(folder)  # a link, to anywhere: replaced by a folder
                mode = None
            if mode is None:
                os.mkdir(folder)
            elif not stat.S_ISDIR(mode):
                raise NotADirectoryError(errno.ENOTDIR, "a file where a folder should be",
                                         str(folder))
        return folder

    # -- ownership -----------------------------------------------------------------------
    def previous(self) -> list[tuple[str, ...]]:
        """What the last run's manifest lists (valid entries only; nothing when there is
        no readable manifest of this tool)."""
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            return []
        files = data.get("files")
        if not isinstance(files, list):
            return []
        out: list[tuple[str, ...]] = []
        for entry in files:
            if not isinstance(entry, str) or entry.startswith("/"):
                continue
            parts = tuple(entry.split("/"))
            if _valid(parts) and parts != (MANIFEST,):
                out.append(parts)
        return out

    def finish(self) -> None:
        """Remove the previous run's files this run did not write (and an index.html
        from before manifests when this run wrote none), then write the manifest."""
        if not self.root.is_dir():
            return  # nothing written, nothing to clean
        previous = self.previous()
        mine = set(self.written)
        stale = [p for p in previous if "/".join(p) not in mine]
        if (
            not os.path.lexists(self.root / MANIFEST) and INDEX not in mine
            and _is_our_index(self.root / INDEX)
        ):
            stale.append((INDEX,))
        for parts in stale:
            self._remove(parts)
        files = list(self.written)
        data = {"tool": TOOL, "version": 1, "files": files}
        if self.write_text((MANIFEST,), json.dumps(data, indent=2) + "\n") is not None:
            self.written.pop()  # the manifest does not list itself

    def _remove(self, parts: Sequence[str]) -> None:
        """Unlink root/parts when every folder on the way is a real folder inside root;
        then remove the folders this leaves empty (never root itself)."""
        folder = self.root
        chain: list[Path] = []
        for part in parts[:-1]:
            folder = folder / part
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    return
            except OSError:
                return
            chain.append(folder)
        target = folder / parts[-1]
        try:
            mode = os.lstat(target).st_mode
        except OSError:
            mode = None
        try:
            if mode is not None and (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                os.unlink(target)
        except OSError as exc:
            self._problem(f"cannot remove a stale report file: {_reason(exc)}")
            return
        for empty in reversed(chain):
            try:
                os.rmdir(empty)
            except OSError:
                break


def write_replacing(target: Path, fill: Callable[[Path], object]) -> None:
    """`fill` a temporary file beside `target`, then rename it over `target` (a link
    there is replaced, not followed; on failure nothing is left behind)."""
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        fill(Path(temporary))
        os.chmod(temporary, 0o644 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_file(path: Path, text: str) -> None:
    """A file the user named (`--junit FILE`): its folder made, a link at it replaced."""
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_replacing(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


_UMASK: list[int] = []


def _umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    if not _UMASK:
        mask = os.umask(0o022)
        os.umask(mask)
        _UMASK.append(mask)
    return _UMASK[0]


def _is_our_index(path: Path) -> bool:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return _OUR_INDEX in head


def _reason(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename else what

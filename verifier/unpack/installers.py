"""Installers users actually receive: MSI, NSIS setup executables, 7z, .deb, .rpm, AppImage.

(Squirrel ``.nupkg`` files are zip archives: the zip reader handles them.)

Each reader is an :class:`~verifier.unpack.registry.Extractor`: it sniffs the bytes (never
the name) and extracts into the fresh directory ``dest``, inside the unpack sandbox. Readers
that shell out to an external tool first *list* the archive and refuse it when a member name is
hostile (absolute, ``..``, control characters) or the listing exceeds the caps, then extract
with a timeout, then sanitise the tree the tool wrote: symlinks are removed (one that points
outside is a problem), special files are problems, and the caps on count and bytes are checked
again on what is actually on disk. Stream formats (.deb's data tar, rpm's cpio) are parsed in
Python and written through :class:`~verifier.unpack.sink.Sink` like any tar or zip member.

Tools: ``msiextract`` (Debian ``msitools``), ``7z`` (``p7zip-full``), ``dpkg-deb`` (optional:
a pure-Python ar reader handles gz/xz/bz2 payloads without it), ``rpm2cpio`` (``rpm``),
``unsquashfs`` (``squashfs-tools``). A missing tool raises ``ToolMissingError``.

The installer file itself is an ordinary member too (its own Authenticode signature counts):
the unpack engine keeps it in the inventory; these readers only produce what is inside.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from verifier.errors import LimitExceededError, MalformedInputError, ToolMissingError
from verifier.unpack import paths, registry
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction, LinkRecord, Problem
from verifier.unpack.sink import Sink, SourceError, StopExtraction
from verifier.unpack.tarreader import _extract_one as _tar_member

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# CLSID of an MSI database's root storage, {000C1084-0000-0000-C000-000000000046}
MSI_CLSIDS = (
    bytes.fromhex("84100c0000000000c000000000000046"),  # installer database (.msi)
)
NSIS_SIG = b"\xef\xbe\xad\xdeNullsoftInst"
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
AR_MAGIC = b"!<arch>\n"
RPM_MAGIC = b"\xed\xab\xee\xdb"
ELF_MAGIC = b"\x7fELF"
SQUASHFS_MAGIC = b"hsqs"
NSIS_SCAN_BYTES = 4 << 20  # how far after the PE image the NSIS header may start
APPIMAGE_SCAN_BYTES = 16 << 20
TOOL_OUTPUT_CAP = 64 << 20  # bytes of a listing we are willing to parse
DEFAULT_LIMITS = Limits()


# --- running tools ---------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissingError(f"'{name}' is needed to read this installer but is not installed")
    return found


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C"}


def _run(cmd: list[str], limits: Limits, *, what: str) -> bytes:
    """Run ``cmd`` with a timeout; its stdout, or MalformedInputError on failure."""
    return _run2(cmd, limits, what=what)[0]


def _run2(cmd: list[str], limits: Limits, *, what: str) -> tuple[bytes, bytes]:
    """Run ``cmd`` with a timeout; (stdout, stderr), or MalformedInputError on failure."""
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limits.worker_timeout_s,
            check=False,
            env=_env(),
        )
    except subprocess.TimeoutExpired:
        raise LimitExceededError(
            f"{what}: {Path(cmd[0]).name} did not finish in {limits.worker_timeout_s:g}s"
        ) from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise MalformedInputError(
            f"{what}: {Path(cmd[0]).name} failed (exit {proc.returncode}) {tail[0][:300]}"
        )
    if len(proc.stdout) > TOOL_OUTPUT_CAP:
        raise LimitExceededError(f"{what}: listing larger than {TOOL_OUTPUT_CAP} bytes")
    return proc.stdout, proc.stderr[-(1 << 16) :]


def _check_listing(names: list[str], sizes: list[int], limits: Limits, what: str) -> None:
    """Refuse an archive whose listing names a hostile path or exceeds the caps."""
    if len(names) > limits.max_members:
        raise LimitExceededError(f"{what}: more than {limits.max_members} members")
    for n in names:
        try:
            paths.clean_name(n, limits.max_name_len)
        except MalformedInputError as e:
            raise MalformedInputError(f"{what}: hostile member name: {e.message}") from None
    total = sum(sizes)
    if total > limits.max_total_bytes:
        raise LimitExceededError(
            f"{what}: members total {total} bytes, cap is {limits.max_total_bytes}"
        )
    if sizes and max(sizes) > limits.max_member_bytes:
        raise LimitExceededError(f"{what}: a member is larger than {limits.max_member_bytes} bytes")


def _sanitize_tree(
    dest: str, limits: Limits, notes: list[Problem] | None = None, *, tool: str = "the tool"
) -> list[Problem]:
    """After an external tool: drop symlinks and special files, re-check the caps on disk.

    The symlinks the tool wrote are not compared (biv does not re-derive them from the
    format): when there are some, a ``tool-links-dropped`` note says so (``notes``)."""
    problems: list[Problem] = []
    dropped: list[str] = []
    count = total = 0
    root = os.path.realpath(dest)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                target = str(full.readlink())
                if paths.link_escapes(rel, target):
                    problems.append(Problem(rel, f"symlink escapes the archive: -> {target!r}"))
                else:
                    dropped.append(rel)
                full.unlink()
                if name in dirnames:
                    dirnames.remove(name)
            elif stat.S_ISDIR(st.st_mode):
                continue
            elif stat.S_ISREG(st.st_mode):
                count += 1
                total += st.st_size
                if st.st_size > limits.max_member_bytes:
                    raise LimitExceededError(f"{rel}: larger than {limits.max_member_bytes} bytes")
            else:
                problems.append(Problem(rel, "special file (device, FIFO or socket)"))
                full.unlink()
    if count > limits.max_members:
        raise LimitExceededError(f"more than {limits.max_members} members")
    if total > limits.max_total_bytes:
        raise LimitExceededError(f"extracted size exceeds {limits.max_total_bytes} bytes")
    if dropped and notes is not None:
        notes.append(
            Problem(
                "",
                f"tool-links-dropped: {tool} wrote {len(dropped)} symlink(s) (first: "
                f"{sorted(dropped)[0]!r}); links unpacked by external tools are not compared",
            )
        )
    return problems


def _read_at(filename: str, offset: int, length: int) -> bytes:
    with open(filename, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


# --- MSI ---------------------------------------------------------------------------------------


def _ole_root_clsid(head: bytes, filename: str) -> bytes | None:
    """The CLSID of an OLE compound file's root storage (bounded reads), or None."""
    if len(head) < 0x50 or head[:8] != OLE_MAGIC:
        return None
    shift = struct.unpack_from("<H", head, 0x1E)[0]
    if shift not in (9, 12):
        return None
    sector = 1 << shift
    first_dir = struct.unpack_from("<I", head, 0x30)[0]
    if first_dir >= 0xFFFFFFFA:
        return None
    off = (first_dir + 1) * sector
    if off + 0x60 > Path(filename).stat().st_size:
        return None
    entry = head[off : off + 0x60] if off + 0x60 <= len(head) else _read_at(filename, off, 0x60)
    if len(entry) < 0x60 or entry[0x42] != 5:  # object type 5 = root storage
        return None
    return entry[0x50:0x60]


def _msi_failed(stderr: bytes) -> str | None:
    """msiextract exits 0 even when it cannot open the database: read its diagnostics."""
    text = stderr.decode("utf-8", "replace")
    for line in text.splitlines():
        if "open failed" in line or "CRITICAL" in line or "ERROR" in line:
            return line.strip()[:300]
    return None


MAX_MSI_UP_LEVELS = 256  # '..' components a hostile MSI may use before it is refused


def _msi_tables(src: str, limits: Limits) -> list[str] | None:
    """The tables of an MSI database (``msiinfo tables``), or None when it cannot be read."""
    try:
        out, err = _run2([_tool("msiinfo"), "tables", src], limits, what="msi")
    except MalformedInputError:
        return None
    if _msi_failed(err) is not None:
        return None
    tables = [t.strip() for t in out.decode("utf-8", "replace").splitlines() if t.strip()]
    return tables or None


def _msi_binary_note(src: str, limits: Limits) -> Problem | None:
    """A note naming the streams of the MSI's Binary table (custom-action DLLs and scripts):
    ``msiextract`` writes only the files an MSI installs, so they are not compared."""
    try:
        out, _ = _run2([_tool("msiinfo"), "streams", src], limits, what="msi")
    except (MalformedInputError, LimitExceededError, ToolMissingError):
        return None
    names = sorted(
        n[len("Binary.") :]
        for n in out.decode("utf-8", "replace").splitlines()
        if n.startswith("Binary.")
    )
    if not names:
        return None
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return Problem(
        "",
        f"msi-binary-streams: the Binary table holds {len(names)} stream(s) ({shown}: "
        "custom-action code, scripts, UI data) that msiextract does not extract; "
        "they are not compared",
    )


def extract_msi(src: str, dest: str, limits: Limits = DEFAULT_LIMITS) -> Extraction:
    """Extract the files an MSI installs (``msiextract``), as laid out under TARGETDIR.

    ``msiextract`` cannot extract selectively and follows '..' in directory names, so it
    writes into a jail: a private directory next to ``dest`` (inside the work directory),
    nested as deep as the most '..' components any listed name has. Members with clean names
    are then moved into ``dest``; members with hostile names are problems and are deleted
    with the jail. A file that is listed but not extracted (a damaged cabinet) is a problem.

    A database without a File table (a validation module ``.cub``, a patch-free template)
    installs no file: it has no members, and a note says so, when ``msiinfo`` reads its
    tables; ``msiextract`` refuses it. What ``msiextract`` does not write (the Binary
    table's streams) is named in a note.
    """
    tool = _tool("msiextract")
    notes: list[Problem] = []
    try:
        out, err = _run2([tool, "--list", src], limits, what="msi")
        failed = _msi_failed(err)
    except MalformedInputError as e:
        failed, out = e.message, b""
    if failed is not None:
        tables = _msi_tables(src, limits)
        if tables is None or "File" in tables:
            raise MalformedInputError(f"msi: cannot read the database: {failed}")
        notes.append(
            Problem(
                "",
                f"msi-no-files: an installer database with {len(tables)} tables and no File "
                "table (a validation module or template): it installs no file",
            )
        )
        if (binary := _msi_binary_note(src, limits)) is not None:
            notes.append(binary)
        return Extraction([], [], 0, 0, notes)
    listed = out.decode("utf-8", "surrogateescape").splitlines()
    names = list(dict.fromkeys(n for n in listed if n.strip()))
    if len(names) > limits.max_members:
        raise LimitExceededError(f"msi: more than {limits.max_members} members")
    problems: list[Problem] = []
    clean: dict[str, str] = {}
    up = 0
    for n in names:
        up = max(up, n.replace("\\", "/").split("/").count(".."))
        try:
            clean[n] = paths.clean_name(n, limits.max_name_len, backslash_sep=True)
        except MalformedInputError as e:
            problems.append(Problem(n, f"hostile member name, not extracted: {e.message}"))
    if up > MAX_MSI_UP_LEVELS:
        raise MalformedInputError(f"msi: a member name climbs {up} directories up")
    jail_root = Path(tempfile.mkdtemp(prefix="msi-jail-", dir=str(Path(dest).parent)))
    try:
        inner = jail_root.joinpath(*(["j"] * (up + 1)))
        inner.mkdir(parents=True)
        _, err = _run2([tool, "--directory", str(inner), src], limits, what="msi")
        if (why := _msi_failed(err)) is not None:
            raise MalformedInputError(f"msi: extraction failed: {why}")
        problems += _sanitize_tree(str(jail_root), limits, notes, tool="msiextract")
        for n, rel in clean.items():
            got = inner / rel
            if not got.is_file() or got.is_symlink():
                problems.append(Problem(rel, "listed in the MSI but not extracted"))
                continue
            target = Path(dest) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not paths.inside(dest, str(target.parent)):
                problems.append(Problem(n, "would be written outside the destination"))
                continue
            got.rename(target)
    finally:
        shutil.rmtree(jail_root, ignore_errors=True)
    if (binary := _msi_binary_note(src, limits)) is not None:
        notes.append(binary)
    return Extraction(problems, [], notes=notes)


class MsiReader:
    name = "msi"

    def sniff(self, head: bytes, filename: str) -> bool:
        return _ole_root_clsid(head, filename) in MSI_CLSIDS

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        return extract_msi(src, dest, limits)


# --- NSIS and 7z (7-Zip) ---------------------------------------------------------------------


def _pe_image_end(head: bytes) -> int | None:
    """End of the last section's raw data of a PE file (from its headers), or None."""
    if len(head) < 0x40 or head[:2] != b"MZ":
        return None
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    if pe + 24 > len(head) or head[pe : pe + 4] != b"PE\0\0":
        return None
    nsect, opt_size = (
        struct.unpack_from("<H", head, pe + 6)[0],
        struct.unpack_from("<H", head, pe + 20)[0],
    )
    table = pe + 24 + opt_size
    end = 0
    for i in range(min(nsect, 96)):
        o = table + 40 * i
        if o + 40 > len(head):
            return None
        raw_size, raw_ptr = struct.unpack_from("<II", head, o + 16)
        end = max(end, raw_ptr + raw_size)
    return end


def nsis_header_offset(head: bytes, filename: str) -> int | None:
    """Offset of the NSIS first header (flags, 0xDEADBEEF, 'NullsoftInst') in a setup.exe."""
    start = _pe_image_end(head)
    if start is None:
        return None
    start = (start + 511) // 512 * 512
    size = Path(filename).stat().st_size
    window = _read_at(filename, start, min(NSIS_SCAN_BYTES, max(0, size - start)))
    for pos in range(0, max(0, len(window) - 20) + 1, 512):
        if window[pos + 4 : pos + 20] == NSIS_SIG:
            return start + pos
    return None


def _parse_7z_slt(text: str) -> list[tuple[str, int, bool]]:
    """(path, size, is_dir) per entry of ``7z l -slt`` output (after the '----------' line)."""
    return [(p, n, d) for p, n, d, _link in parse_7z_listing(text)]


def parse_7z_listing(text: str) -> list[tuple[str, int, bool, str | None]]:
    """(path, size, is_dir, symlink target or None) per entry of ``7z l -slt`` output.

    An entry is a symlink when 7-Zip gives its target (``Symbolic Link``) or its Unix mode
    says so (``Attributes = A_ -lrwxrwxrwx``)."""
    out: list[tuple[str, int, bool, str | None]] = []
    _, _, body = text.partition("\n----------\n")
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                fields[key.strip()] = value
        if "Path" not in fields:
            continue
        is_dir = fields.get("Folder") == "+" or fields.get("Attributes", "").startswith("D")
        size = 0
        with contextlib.suppress(ValueError):
            size = int(fields.get("Size") or 0)
        mode = fields.get("Attributes", "").rpartition(" ")[2]
        target = fields.get("Symbolic Link") or None
        if target is None and mode.startswith("l"):
            target = ""
        out.append((fields["Path"], size, is_dir, target))
    return out


def extract_7z(
    src: str,
    dest: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    kind: str = "7z",
    notes: list[Problem] | None = None,
) -> list[Problem]:
    """Extract with 7-Zip (``kind`` is its archive type: ``7z``, ``Nsis``...).

    Members with hostile names (``..``, absolute, drive letters: an NSIS script can write
    anywhere) are problems and are left out: only the others are extracted, by exact name.
    A wrong password is given so that an encrypted archive fails instead of prompting.
    Symlinks the listing shows are not compared: a ``tool-links-dropped`` note (``notes``)
    says how many.
    """
    tool = shutil.which("7z") or shutil.which("7zz") or _tool("7z")
    what = kind.lower()
    common = ["-bd", f"-t{kind}", "-pbiv-no-password", "-scsUTF-8", "-sccUTF-8"]
    listing = _run([tool, "l", "-slt", *common, src], limits, what=what)
    problems: list[Problem] = []
    safe: list[str] = []
    sizes: list[int] = []
    listed_links: list[str] = []
    for raw, size, is_dir, link in parse_7z_listing(listing.decode("utf-8", "surrogateescape")):
        if link is not None:
            listed_links.append(raw)
        try:
            paths.clean_name(raw, limits.max_name_len)
        except MalformedInputError as e:
            problems.append(Problem(raw, f"hostile member name, not extracted: {e.message}"))
            continue
        if not is_dir:
            safe.append(raw)
            sizes.append(size)
    _check_listing(safe, sizes, limits, what)
    if problems and not safe:
        return problems
    cmd = [tool, "x", "-y", *common, "-spd", f"-o{dest}", src]
    listfile = Path(f"{dest}.7zlist")
    if problems:
        listfile.write_text("".join(n + "\n" for n in safe), encoding="utf-8")
        cmd.append(f"-i@{listfile}")
    try:
        _run(cmd, limits, what=what)
    finally:
        listfile.unlink(missing_ok=True)
    found: list[Problem] = []
    problems += _sanitize_tree(dest, limits, found, tool="7-Zip")
    if notes is not None and (listed_links or found):
        first = sorted(listed_links)[0] if listed_links else ""
        notes.append(
            Problem(
                "",
                f"tool-links-dropped: the {kind} archive holds {len(listed_links)} symlink(s)"
                + (f" (first: {first!r})" if first else "")
                + "; links unpacked by 7-Zip are not compared",
            )
            if listed_links
            else found[0]
        )
    return problems


def extract_nsis(src: str, dest: str, limits: Limits = DEFAULT_LIMITS) -> list[Problem]:
    """Extract an NSIS setup executable's files (7-Zip understands NSIS)."""
    return extract_7z(src, dest, limits, kind="Nsis")


class NsisReader:
    name = "nsis"

    def sniff(self, head: bytes, filename: str) -> bool:
        return nsis_header_offset(head, filename) is not None

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        notes: list[Problem] = []
        problems = extract_7z(src, dest, limits, kind="Nsis", notes=notes)
        return Extraction(problems, [], notes=notes)


class SevenZipReader:
    name = "7z"

    def sniff(self, head: bytes, filename: str) -> bool:
        return head[:6] == SEVENZIP_MAGIC

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        notes: list[Problem] = []
        problems = extract_7z(src, dest, limits, kind="7z", notes=notes)
        return Extraction(problems, [], notes=notes)


# --- tar streams (deb) and cpio streams (rpm) --------------------------------------------------


def _tar_stream(fileobj: IO[bytes], sink: Sink) -> None:
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            for ti in tf:
                if ti.isdir() and ti.name.strip("./") == "":
                    continue  # the archive root ("./"), as dpkg-deb and GNU tar write it
                _tar_member(tf, ti, sink)
    except StopExtraction:
        pass
    except SourceError as e:
        raise MalformedInputError(f"truncated or corrupt tar: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        raise MalformedInputError(f"truncated or corrupt tar: {e}") from None


def _ar_members(fh: IO[bytes], size: int) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of the members of a Unix ar archive, bounds-checked."""
    if fh.read(8) != AR_MAGIC:
        raise MalformedInputError("not an ar archive")
    pos = 8
    for _ in range(64):
        fh.seek(pos)
        hdr = fh.read(60)
        if not hdr:
            return
        if len(hdr) < 60 or hdr[58:60] != b"`\n":
            raise MalformedInputError(f"corrupt ar header at offset {pos}")
        try:
            msize = int(hdr[48:58].decode("ascii").strip())
        except ValueError:
            raise MalformedInputError(f"corrupt ar member size at offset {pos}") from None
        start = pos + 60
        if msize < 0 or start + msize > size:
            raise MalformedInputError(f"ar member at offset {pos} runs past the end of the file")
        yield hdr[:16].decode("ascii", "replace").strip().rstrip("/"), start, msize
        pos = start + msize + (msize & 1)
    raise MalformedInputError("too many ar members for a .deb")


class _Window(io.RawIOBase):
    """A read-only window of a file (a member stored in place)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int) -> None:
        self.fh, self.left = fh, size
        fh.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = self.fh.read(n)
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


def extract_deb(
    src: str, dest: str, limits: Limits = DEFAULT_LIMITS, *, use_dpkg: bool = True
) -> Extraction:
    """Extract a .deb's data (``dpkg-deb --fsys-tarfile`` if present, else ar + tar here).

    Its links are recorded like a tar's (``deb_links``: absolute targets are relative to the
    package's root, as dpkg installs them relative to the system's '/')."""
    size = Path(src).stat().st_size
    sink = Sink(dest, limits, stream_compressed=size)
    dpkg = shutil.which("dpkg-deb") if use_dpkg else None
    if dpkg:
        _pipe([dpkg, "--fsys-tarfile", src], limits, "deb", lambda out: _tar_stream(out, sink))
        return deb_links(sink.result())
    with open(src, "rb") as fh:
        for name, off, msize in _ar_members(fh, size):
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise ToolMissingError("a zstd-compressed .deb needs 'dpkg-deb' (package dpkg)")
                _tar_stream(io.BufferedReader(_Window(fh, off, msize)), sink)
                return deb_links(sink.result())
    raise MalformedInputError("deb: no data.tar member")


def deb_links(ext: Extraction) -> Extraction:
    """A .deb's symlinks as dpkg installs them (``root_links``)."""
    return root_links(ext, "deb", "dpkg")


def root_links(ext: Extraction, kind: str, installer: str) -> Extraction:
    """A package's symlinks as its installer (dpkg, rpm) makes them: the package's root is
    the system's '/', so an absolute target (``/usr/bin/xz``) is read from the package's
    root, and a ``KIND-absolute-links`` note says how many there were (a target outside the
    package, such as ``/etc/alternatives/x``, is kept as text: a link need not resolve
    inside the package). One that still leaves the tree (``/../x``) is hostile."""
    recs: list[LinkRecord] = []
    absolute: list[str] = []
    for r in ext.links:
        if not r.hard and r.target.startswith("/"):
            recs.append(LinkRecord(r.member, r.target.lstrip("/"), from_root=True))
            absolute.append(r.member)
        else:
            recs.append(r)
    notes = list(ext.notes)
    if absolute:
        notes.append(
            Problem(
                "",
                f"{kind}-absolute-links: {len(absolute)} symlink(s) with an absolute target "
                f"(first: {sorted(absolute)[0]!r}): {installer} resolves them against the "
                "installed system's '/', biv against the package's root, and compares them as "
                "links relative to it",
            )
        )
    return Extraction(ext.problems, recs, ext.files, ext.size, notes)


def _pipe(cmd: list[str], limits: Limits, what: str, consume: Callable[[IO[bytes]], None]) -> None:
    """Run ``cmd`` and feed its stdout to ``consume`` as a stream (killed on timeout)."""
    import threading

    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    timer = threading.Timer(limits.worker_timeout_s, proc.kill)
    timer.start()
    err = b""
    try:
        consume(proc.stdout)
        # drain what the consumer did not read (it stopped early at a cap)
        while proc.stdout.read(1 << 20):
            pass
        err = proc.stderr.read(1 << 16)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if rc < 0:
        raise LimitExceededError(f"{what}: {Path(cmd[0]).name} killed (timeout?)")
    if rc != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise MalformedInputError(f"{what}: {Path(cmd[0]).name} failed: {tail[0][:300]}")


class _Bounded:
    """At most ``n`` bytes of a stream (a cpio member's data)."""

    def __init__(self, fh: IO[bytes], n: int) -> None:
        self.fh, self.left = fh, n

    def read(self, n: int = -1, /) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        if want <= 0:
            return b""
        data = self.fh.read(want)
        if not data:
            raise EOFError("cpio member data truncated")
        self.left -= len(data)
        return data


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = fh.read(n - len(data))
        if not chunk:
            raise MalformedInputError("cpio stream truncated")
        data += chunk
    return data


def _skip(fh: IO[bytes], n: int) -> None:
    while n > 0:
        chunk = fh.read(min(n, 1 << 20))
        if not chunk:
            raise MalformedInputError("cpio stream truncated")
        n -= len(chunk)


MAX_LINK_TARGET = 4096  # PATH_MAX: a longer symlink target is refused (never cut)

_Inode = tuple[int, int, int]  # (device major, device minor, inode) of a cpio entry


class _CpioHardLinks:
    """The hard links of a cpio 'newc' stream, as GNU cpio -i (``copyin_regular_file``) and
    rpm make them.

    The names of one file (regular entries with ``c_nlink`` > 1 and the same device and
    inode numbers) store its data once: rpm and GNU cpio -o attach it to the last name and
    give the others size 0. cpio -i defers the empty names and links them to the file once
    its data is written (one met after it is linked at once); names whose data never comes
    are made one empty file at the end. So here: the name with the data is the stored file,
    every other name a hard link to it (``Sink.hardlink``, compared like a tar's). A second
    name with data for the same file is hostile (GNU cpio keeps the first data, an
    extractor that writes each entry the last); so is a name whose file was not extracted.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.stored: dict[_Inode, str] = {}  # inode -> the name its data was written under
        self.waiting: dict[_Inode, list[tuple[str, str]]] = {}  # (raw, clean) without data yet
        self.dropped: set[_Inode] = set()  # inodes whose data was not extracted
        self.count = 0  # names waiting, capped like members

    def entry(self, raw: str, data: _Bounded, size: int, inode: _Inode) -> None:
        sink = self.sink
        clean = sink.name(raw)
        if clean is None:  # hostile or duplicate name: the problem is recorded
            if size:
                self.dropped.add(inode)
            return
        if size == 0:
            if inode in self.stored:
                sink.hardlink(raw, clean, self.stored[inode])
            elif inode in self.dropped:
                sink.problem(raw, "hard link to a member that was not extracted")
            else:
                if self.count >= sink.limits.max_members:
                    sink.problem(raw, f"more than {sink.limits.max_members} members")
                    raise StopExtraction
                self.count += 1
                sink.seen.add(clean)  # a later entry of the same name is a duplicate
                self.waiting.setdefault(inode, []).append((raw, clean))
            return
        if inode in self.stored or inode in self.dropped:
            sink.problem(
                raw,
                "the data of a hard-linked file is stored twice (GNU cpio keeps the first, "
                "an extractor that writes each entry the last)",
            )
            return
        self.dropped.add(inode)  # until its data is written
        sink.admit_file(raw)
        sink.write(clean, data)
        self.dropped.discard(inode)
        self.stored[inode] = clean
        for w_raw, w_clean in self.waiting.pop(inode, []):
            sink.hardlink(w_raw, w_clean, clean)

    def finish(self) -> None:
        """Names whose data never came: one empty file per inode (cpio's
        ``create_final_defers``), the other names linked to it."""
        sink = self.sink
        for inode, names in self.waiting.items():
            if inode in self.dropped:
                for raw, _ in names:
                    sink.problem(raw, "hard link to a member that was not extracted")
                continue
            (raw, first), *rest = sorted(names, key=lambda n: n[1])
            try:
                sink.admit_file(raw)
                sink.write(first, io.BytesIO(b""))
            except MalformedInputError as e:
                sink.problem(raw, e.message)
                continue
            except OSError as e:
                sink.problem(raw, f"cannot write entry: {e.strerror or e}")
                continue
            for w_raw, w_clean in rest:
                sink.hardlink(w_raw, w_clean, first)
        self.waiting.clear()


def cpio_stream(fh: IO[bytes], sink: Sink) -> None:
    """Extract a cpio 'newc' (070701/070702) stream through ``sink``.

    Regular files and directories are written; symlinks are recorded, never created (checked
    with the whole layer, ``links.py``); hard-linked names as GNU cpio -i makes them
    (``_CpioHardLinks``); devices and FIFOs are problems.
    """
    pos = 0
    hard = _CpioHardLinks(sink)
    try:
        while True:
            hdr = _read_exact(fh, 110)
            pos += 110
            if hdr[:6] not in (b"070701", b"070702"):
                raise MalformedInputError(f"not a cpio newc header at offset {pos - 110}")
            try:
                f = [int(hdr[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            except ValueError:
                raise MalformedInputError("corrupt cpio header") from None
            ino, mode, nlink, filesize, namesize = f[0], f[1], f[4], f[6], f[11]
            if namesize < 1 or namesize > sink.limits.max_name_len + 1:
                raise MalformedInputError(f"cpio name size {namesize} out of range")
            raw_name = _read_exact(fh, namesize)
            pos += namesize
            pad = (-pos) % 4
            _skip(fh, pad)
            pos += pad
            name = raw_name.rstrip(b"\0").decode("utf-8", "surrogateescape")
            if name == "TRAILER!!!":
                hard.finish()
                return
            dpad = (-(pos + filesize)) % 4
            linked = stat.S_ISREG(mode) and nlink > 1
            _cpio_member(
                fh, sink, name, mode, filesize, hard, (f[7], f[8], ino) if linked else None
            )
            _skip(fh, dpad)
            pos += filesize + dpad
    except StopExtraction:
        return


def _cpio_member(
    fh: IO[bytes],
    sink: Sink,
    raw: str,
    mode: int,
    filesize: int,
    hard: _CpioHardLinks,
    inode: _Inode | None,
) -> None:
    data = _Bounded(fh, filesize)
    fmt = stat.S_IFMT(mode)
    try:
        if inode is not None:
            hard.entry(raw, data, filesize, inode)
        elif (clean := sink.name(raw, is_dir=fmt == stat.S_IFDIR)) is None:
            pass
        elif fmt == stat.S_IFDIR:
            sink.mkdir(clean)
        elif fmt == stat.S_IFREG:
            sink.admit_file(raw)
            sink.write(clean, data)
        elif fmt == stat.S_IFLNK:
            if filesize > MAX_LINK_TARGET:
                sink.problem(raw, f"symlink target longer than {MAX_LINK_TARGET} bytes")
            else:
                target = data.read(filesize).decode("utf-8", "surrogateescape")
                sink.link(raw, clean, target)  # checked with the whole layer (links.py)
        else:
            sink.problem(raw, "device, FIFO or socket entry")
    except (StopExtraction, SourceError):
        raise
    except (MalformedInputError, LimitExceededError) as e:
        sink.problem(raw, e.message)
    except OSError as e:
        sink.problem(raw, f"cannot write entry: {e.strerror or e}")
    # whatever the member's fate, consume the rest of its data
    while data.read(1 << 20):
        pass


def extract_rpm(src: str, dest: str, limits: Limits = DEFAULT_LIMITS) -> Extraction:
    """Extract an .rpm's payload (``rpm2cpio`` decompresses; the cpio is parsed here), as
    ``rpm2cpio X.rpm | cpio -idm`` writes it; its links are recorded like a .deb's
    (``root_links``: absolute targets are relative to the package's root)."""
    sink = Sink(dest, limits, stream_compressed=Path(src).stat().st_size)
    tool = _tool("rpm2cpio")

    def consume(out: IO[bytes]) -> None:
        try:
            cpio_stream(out, sink)
        except SourceError as e:
            raise MalformedInputError(f"rpm: corrupt payload: {e}") from None
        except EOFError as e:
            raise MalformedInputError(f"rpm: truncated payload: {e}") from None

    _pipe([tool, src], limits, "rpm", consume)
    return root_links(sink.result(), "rpm", "rpm")


class DebReader:
    name = "deb"

    def sniff(self, head: bytes, filename: str) -> bool:
        return head[:8] == AR_MAGIC and head[8:21] == b"debian-binary"

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        return extract_deb(src, dest, limits)


class RpmReader:
    name = "rpm"

    def sniff(self, head: bytes, filename: str) -> bool:
        return head[:4] == RPM_MAGIC

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        return extract_rpm(src, dest, limits)


# --- AppImage ----------------------------------------------------------------------------------


def appimage_offset(head: bytes, filename: str) -> int | None:
    """Offset of the squashfs image in an AppImage (type 2): the end of the ELF runtime."""
    if head[:4] != ELF_MAGIC or len(head) < 64:
        return None
    size = Path(filename).stat().st_size
    is64, little = head[4] == 2, head[5] == 1
    end = "<" if little else ">"
    if is64:
        shoff = struct.unpack_from(end + "Q", head, 0x28)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", head, 0x3A)
    else:
        shoff = struct.unpack_from(end + "I", head, 0x20)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", head, 0x2E)
    off = shoff + shentsize * shnum
    if 0 < off <= size - 4 and _read_at(filename, off, 4) == SQUASHFS_MAGIC:
        return int(off)
    # fall back: scan (4-byte steps would miss nothing the runtime produces; 1-byte to be sure)
    window = _read_at(filename, 0, min(size, APPIMAGE_SCAN_BYTES))
    i = window.find(SQUASHFS_MAGIC, 64)
    return i if i > 0 else None


def extract_appimage(src: str, dest: str, limits: Limits = DEFAULT_LIMITS) -> Extraction:
    """Extract an AppImage's squashfs (``unsquashfs -o OFFSET``)."""
    head = _read_at(src, 0, registry.HEAD_SIZE)
    off = appimage_offset(head, src)
    if off is None:
        raise MalformedInputError("AppImage: no squashfs image found")
    tool = _tool("unsquashfs")
    listing = _run([tool, "-o", str(off), "-lls", "-n", src], limits, what="appimage")
    names: list[str] = []
    sizes: list[int] = []
    for line in listing.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("squashfs-root"):
            name = parts[5].split(" -> ", 1)[0] if parts[0].startswith("l") else parts[5]
            rel = name[len("squashfs-root") :].lstrip("/")
            if rel:
                names.append(rel)
                if parts[0].startswith("-"):
                    with contextlib.suppress(ValueError):
                        sizes.append(int(parts[2]))
    _check_listing(names, sizes, limits, "appimage")
    _run(
        [tool, "-o", str(off), "-n", "-no-xattrs", "-f", "-d", dest, src],
        limits,
        what="appimage",
    )
    notes: list[Problem] = []
    problems = _sanitize_tree(dest, limits, notes, tool="unsquashfs")
    return Extraction(problems, [], notes=notes)


class AppImageReader:
    name = "appimage"

    def sniff(self, head: bytes, filename: str) -> bool:
        # AppImage type 2 runtime: "AI\x02" in the ELF identification padding
        return head[:4] == ELF_MAGIC and head[8:11] == b"AI\x02"

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        return extract_appimage(src, dest, limits)


registry.register(MsiReader(), priority=30)
registry.register(NsisReader(), priority=30)
registry.register(SevenZipReader(), priority=60)
registry.register(DebReader(), priority=30)
registry.register(RpmReader(), priority=30)
registry.register(AppImageReader(), priority=30)

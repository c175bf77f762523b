"""The files of a published npm tarball, as biv compares them (``Published``).

Read in process, streaming, nothing extracted: each regular member is hashed once; native
code (by magic or by extension) is spooled to a temporary file and analysed like any shipped
binary (normalised digests, signatures), so a vendor-re-signed ``.node`` is recognised.
Member names lose their first path component, whatever it is, as npm does (most tarballs
use ``package/``, ``@types/*`` use the package's name). Links are skipped (npm does not
install them); names with ``..`` are skipped and noted. Caps: members, bytes per member,
bytes in all, compressed bytes. The tarball was proven by its integrity before it is read,
but a published package is still anyone's upload: nothing here trusts its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import field
from typing import IO, Any

from verifier.analysis import AnalysisContext, analyze
from verifier.binary.sniff import SNIFF, sniff
from verifier.errors import MalformedInputError, SchemaError
from verifier.jsonread import Fields, is_hex64
from verifier.model import BinaryFacts, Blob, FileEntry, FileFormat
from verifier.npmdeps.manifest import parse_manifest
from verifier.record import record

MAX_MEMBERS = 100_000
MAX_MEMBER_BYTES = 512 << 20
MAX_TOTAL_BYTES = 2 << 30
MAX_SMALL_DOC = 4 << 20  # package.json, binding.gyp
CHUNK = 1 << 16
CODE_SUFFIXES = (".node", ".dll", ".exe", ".dylib", ".so")
DOC_SCHEMA = "biv.npm-published/v2"
_FORMATS = {f.value: f for f in FileFormat}
_DIGEST_KEYS = frozenset(("sha1", "sha256", "sha384", "sha512", "size"))
_DOC_KEYS = frozenset(
    (
        "schema",
        "data",
        "files",
        "manifest",
        "has_binding_gyp",
        "gyp_targets",
        "module_name",
        "module_path",
        "alt_sha256",
        "notes",
    )
)


@record
class TarDigests:
    """Digests of the tarball file itself (what integrity strings and lockfiles hash)."""

    sha1: str
    sha256: str
    sha384: str
    sha512: str
    size: int

    def get(self, alg: str) -> str | None:
        return {
            "sha1": self.sha1,
            "sha256": self.sha256,
            "sha384": self.sha384,
            "sha512": self.sha512,
        }.get(alg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha1": self.sha1,
            "sha256": self.sha256,
            "sha384": self.sha384,
            "sha512": self.sha512,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> TarDigests:
        """Raises ``SchemaError`` on anything but what ``to_dict`` writes."""
        f = Fields(d, where)
        f.known(_DIGEST_KEYS)
        return cls(
            _hex(f, "sha1", 40),
            f.sha256("sha256"),
            _hex(f, "sha384", 96),
            _hex(f, "sha512", 128),
            f.number("size"),
        )


@record
class Published:
    """What a published tarball holds (cached as JSON next to the tarball's proof)."""

    files: Mapping[str, FileEntry]  # path inside the package -> entry
    manifest: Mapping[str, Any] | None = None  # the published package.json, parsed
    has_binding_gyp: bool = False
    gyp_targets: tuple[str, ...] = ()  # binding.gyp target names
    module_name: str | None = None  # node-pre-gyp binary.module_name
    module_path: str | None = None  # node-pre-gyp binary.module_path (a template)
    # path -> sha256 of the file as npm installs a bin script: CRLF ending of the #! line -> LF
    alt_sha256: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def install_built(self, rel: str) -> str | None:
        """Why ``rel`` (a file the tarball lacks) is a native module built at install time.

        Only for packages with a ``binding.gyp``: its target under ``build/Release/``, or
        node-pre-gyp's ``binary.module_path``/``module_name``.node. None otherwise.
        """
        if not self.has_binding_gyp or not rel.endswith(".node"):
            return None
        names = set(self.gyp_targets)
        if self.module_name:
            names = {self.module_name if n == "<(module_name)" else n for n in names}
            names.add(self.module_name)
        for n in sorted(names):
            if rel == f"build/Release/{n}.node":
                return f"binding.gyp target {n!r} (build/Release/{n}.node)"
        if self.module_path and self.module_name:
            rx = _template_regex(self.module_path, self.module_name)
            if rx is not None and rx.fullmatch(rel):
                return f"node-pre-gyp binary.module_path {self.module_path!r}"
        return None

    def to_doc(self) -> dict[str, Any]:
        """Data files as [path, size, sha256] (most of a package), code with all its facts."""
        data, code = [], []
        for path, e in sorted(self.files.items()):
            if e.format in (FileFormat.DATA, FileFormat.ASAR) and not e.facts.anomalies:
                data.append([path, e.size, e.sha256, e.format.value])
            else:
                code.append(e.to_ref_dict())
        return {
            "schema": DOC_SCHEMA,
            "data": data,
            "files": code,
            "manifest": dict(self.manifest) if self.manifest is not None else None,
            "has_binding_gyp": self.has_binding_gyp,
            "gyp_targets": list(self.gyp_targets),
            "module_name": self.module_name,
            "module_path": self.module_path,
            "alt_sha256": dict(sorted(self.alt_sha256.items())),
            "notes": list(self.notes),
        }

    @classmethod
    def from_doc(cls, d: object, label: str) -> Published:
        """Raises ``SchemaError`` on a document that is not one of ours (what ``to_doc``
        writes)."""
        f = Fields(d)
        if f.opt_text("schema") != DOC_SCHEMA:
            raise SchemaError("not a published-package document", where="schema")
        f.known(_DOC_KEYS)
        files: dict[str, FileEntry] = {}
        prefix = f"{label}!/"
        for i, row in enumerate(f.rows("data", 4)):
            path, size, sha, fmt = _data_row(row, f"data[{i}]")
            facts = BinaryFacts(format=fmt, normalized_sha256=sha)
            files[path] = FileEntry(path, prefix + path, (), size, sha, facts)
        if "files" not in f:
            raise SchemaError("missing required key 'files'")
        for x in f.objects("files"):
            e = FileEntry.read(x, prefix)
            files[e.path] = e
        return cls(
            files=files,
            manifest=f.json_object("manifest"),
            has_binding_gyp=f.flag("has_binding_gyp", False),
            gyp_targets=f.str_list("gyp_targets"),
            module_name=f.opt_text("module_name") or None,
            module_path=f.opt_text("module_path") or None,
            alt_sha256=f.sha256_map("alt_sha256"),
            notes=f.str_list("notes"),
        )


def _opt_str(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def _hex(f: Fields, key: str, digits: int) -> str:
    v = f.text(key)
    if len(v) != digits or any(c not in "0123456789abcdef" for c in v):
        raise f.error(key, f"expected {digits} lower-case hex digits")
    return v


def _data_row(row: list[Any], where: str) -> tuple[str, int, str, FileFormat]:
    """A data file as ``[path, size, sha256, format]``."""
    path, size, sha, fmt = row
    if not isinstance(path, str) or not path:
        raise SchemaError("expected a path", where=f"{where}[0]")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SchemaError("expected a non-negative integer", where=f"{where}[1]")
    if not isinstance(sha, str) or not is_hex64(sha):
        raise SchemaError("expected a sha256", where=f"{where}[2]")
    if fmt not in _FORMATS:
        raise SchemaError(f"expected one of {', '.join(_FORMATS)}", where=f"{where}[3]")
    return path, size, sha.lower(), _FORMATS[fmt]


def _template_regex(template: str, module_name: str) -> re.Pattern[str] | None:
    """node-pre-gyp's ``{placeholder}`` template as a regular expression over one path."""
    t = template.strip().replace("\\", "/")
    while t.startswith("./"):
        t = t[2:]
    t = t.strip("/")
    if not t or len(t) > 512 or ".." in t.split("/"):
        return None
    out = []
    for part in re.split(r"(\{[A-Za-z0-9_]+\})", t):
        out.append("[^/]+" if part.startswith("{") and part.endswith("}") else re.escape(part))
    return re.compile("".join(out) + "/" + re.escape(module_name) + r"\.node")


_TARGET_NAME = re.compile(r"""["']target_name["']\s*:\s*["']([^"'\n]{1,200})["']""")


def _gyp_targets(data: bytes) -> tuple[str, ...]:
    text = data.decode("utf-8", "replace")
    return tuple(sorted(set(_TARGET_NAME.findall(text))))


class _HashingReader:
    """A file object that hashes (and counts) every byte read through it."""

    def __init__(self, fh: IO[bytes], cap: int) -> None:
        self.fh = fh
        self.cap = cap
        self.size = 0
        self.h = [hashlib.new(a) for a in ("sha1", "sha256", "sha384", "sha512")]

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n if n is not None and n >= 0 else CHUNK)
        self.size += len(data)
        if self.size > self.cap:
            raise MalformedInputError(f"tarball larger than {self.cap} bytes")
        for h in self.h:
            h.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digests(self) -> TarDigests:
        a, b, c, d = (h.hexdigest() for h in self.h)
        return TarDigests(a, b, c, d, self.size)


def _strip_first(name: str) -> str | None:
    """The member's path inside the package ('' for the top folder, None when unsafe)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts[1:])


def read_tarball(
    path: str, label: str, workdir: str, ctx: AnalysisContext | None
) -> tuple[Published, TarDigests]:
    """The published files of the tarball at ``path`` and the tarball's own digests.

    ``label`` names the tarball in locations (``ms-2.1.3.tgz``). Raises
    ``MalformedInputError`` for a tarball that cannot be read or breaks a cap.
    """
    files: dict[str, FileEntry] = {}
    alt: dict[str, str] = {}
    notes: list[str] = []
    manifest_bytes: bytes | None = None
    gyp: bytes | None = None
    total = 0
    count = 0
    os.makedirs(workdir, exist_ok=True)
    try:
        with open(path, "rb") as raw:
            hr = _HashingReader(raw, MAX_TOTAL_BYTES)
            with tarfile.open(fileobj=hr, mode="r|*") as tf:  # type: ignore[call-overload]
                for info in tf:
                    count += 1
                    if count > MAX_MEMBERS:
                        raise MalformedInputError(f"more than {MAX_MEMBERS} members")
                    rel = _strip_first(info.name)
                    if rel is None:
                        notes.append(f"member {info.name[:200]!r} has a '..' segment: skipped")
                        continue
                    if not info.isfile():
                        if info.issym() or info.islnk():
                            notes.append(f"link {rel[:200]!r} skipped (npm does not install links)")
                        continue
                    if not rel:
                        continue
                    if info.size > MAX_MEMBER_BYTES:
                        raise MalformedInputError(f"member {rel[:200]!r} is {info.size} bytes")
                    total += info.size
                    if total > MAX_TOTAL_BYTES:
                        raise MalformedInputError(f"members hold more than {MAX_TOTAL_BYTES} bytes")
                    fh = tf.extractfile(info)
                    if fh is None:
                        continue
                    with contextlib.closing(fh):
                        entry, alt_sha, head = _member(fh, info, rel, label, workdir, ctx)
                    files[rel] = entry  # a later duplicate replaces an earlier one, as tar does
                    alt.pop(rel, None)
                    if alt_sha is not None:
                        alt[rel] = alt_sha
                    if rel == "package.json":
                        manifest_bytes = head
                    elif rel == "binding.gyp":
                        gyp = head
            hr.drain()
            digests = hr.digests()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise MalformedInputError(f"cannot read tarball: {e}", where=label) from None
    except MalformedInputError as e:
        raise MalformedInputError(e.message, where=label) from None
    manifest = None
    if manifest_bytes is not None:
        try:
            manifest = parse_manifest(manifest_bytes, f"{label}!/package.json")
        except MalformedInputError as e:
            notes.append(f"published package.json unreadable ({e.message}): compared as bytes")
    binary = manifest.get("binary") if manifest is not None else None
    module_name = module_path = None
    if isinstance(binary, dict):
        module_name = _opt_str(binary.get("module_name"))
        module_path = _opt_str(binary.get("module_path"))
    pub = Published(
        files=files,
        manifest=manifest,
        has_binding_gyp=gyp is not None,
        gyp_targets=_gyp_targets(gyp) if gyp is not None else (),
        module_name=module_name,
        module_path=module_path,
        alt_sha256=alt,
        notes=tuple(notes[:100]),
    )
    return pub, digests


def _member(
    fh: IO[bytes],
    info: tarfile.TarInfo,
    rel: str,
    label: str,
    workdir: str,
    ctx: AnalysisContext | None,
) -> tuple[FileEntry, str | None, bytes | None]:
    """(entry, sha256 with a CRLF #! line fixed or None, bytes of a small doc we keep)."""
    first = fh.read(min(CHUNK, info.size) if info.size else CHUNK)
    location = f"{label}!/{info.name}"
    fmt = sniff(first[:SNIFF], info.size)
    keep = rel in ("package.json", "binding.gyp")
    if fmt.is_code or rel.lower().endswith(CODE_SUFFIXES):
        entry = _analysed(fh, first, info, rel, location, workdir, ctx)
        return entry, None, None
    h = hashlib.sha256(first)
    fixed = _fix_shebang(first)
    alt = hashlib.sha256(fixed) if fixed is not None else None
    kept = bytearray(first) if keep else None
    size = len(first)
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        h.update(chunk)
        if alt is not None:
            alt.update(chunk)
        if kept is not None and len(kept) <= MAX_SMALL_DOC:
            kept += chunk
    sha = h.hexdigest()
    entry = FileEntry(rel, location, (), size, sha, BinaryFacts(format=fmt, normalized_sha256=sha))
    alt_sha = alt.hexdigest() if alt is not None else None
    return entry, alt_sha, bytes(kept) if kept is not None else None


def _fix_shebang(first: bytes) -> bytes | None:
    """npm's bin-links rewrites a ``#!`` line ending in CRLF to LF when it installs a bin."""
    if not first.startswith(b"#!"):
        return None
    nl = first.find(b"\n")
    if nl <= 0 or first[nl - 1 : nl] != b"\r":
        return None
    return first[: nl - 1] + first[nl:]


def _analysed(
    fh: IO[bytes],
    first: bytes,
    info: tarfile.TarInfo,
    rel: str,
    location: str,
    workdir: str,
    ctx: AnalysisContext | None,
) -> FileEntry:
    """A code member: spooled to a temporary file and analysed like a shipped binary."""
    fd, tmp = tempfile.mkstemp(prefix=".npm-member-", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(first)
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
        sha, facts = analyze(Blob.of_file(tmp), rel.rsplit("/", 1)[-1], ctx)
        size = os.path.getsize(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return FileEntry(rel, location, (), size, sha, facts)

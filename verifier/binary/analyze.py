"""Sniff a file's format and learn everything biv needs about it in one streaming pass.

Why: the inventory of a shipped artifact and of an upstream reference must carry, per file,
the plain sha256 and the digests the comparison uses (normalised digest, header and section
digests, fuse wire, signature facts). Reading each byte once keeps large Electron binaries
cheap. ``analyze`` never raises on bad bytes: a file that looks like a binary but cannot be
parsed safely gets a ``malformed-input`` anomaly, which fails the verdict.
"""

from __future__ import annotations

import hashlib
import importlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion

from verifier.binary import cafebabe, elf, pe
from verifier.binary.fuses import FuseMaskedView, FuseScanner
from verifier.errors import MalformedInputError
from verifier.hashing import Span, View, digest_views, sha256_file
from verifier.model import (
    UNSIGNED,
    Anomaly,
    BinaryFacts,
    Blob,
    CodeShape,
    FileFormat,
    SectionDigest,
    SignatureFacts,
    SignatureKind,
)

if TYPE_CHECKING:  # loaded with importlib below; named here so the import contract sees them
    from verifier.binary import macho  # noqa: F401
    from verifier.signing import authenticode  # noqa: F401

MAX_CERT_TABLE = 16 << 20
SNIFF = pe.MAX_HEADERS
# UnsupportedAlgorithm and InvalidVersion (cryptography, on certificates inside signatures)
# derive from Exception only: fuzzing found both escaping (tests/fuzz/regressions/)
_PARSER_SLIPS = (
    struct.error,
    IndexError,
    KeyError,
    ValueError,
    OverflowError,
    UnicodeError,
    UnsupportedAlgorithm,
    InvalidVersion,
)


@dataclass(frozen=True)
class AnalysisContext:
    """What signature verification needs: trust roots and the time to verify at."""

    trust: object | None = None  # signing.trust.TrustConfig
    at: datetime | None = None
    verify_signatures: bool = True
    # verifier.analysis_cache.AnalysisCache: facts by content (inventory uses it)
    cache: object | None = field(default=None, compare=False)
    # "full": every digest. "core": everything but the digests only a comparison with a
    # *different* file needs (PE/ELF section digests; a PE's normalised digest unless the
    # Authenticode digest gives it for free); ``inventory.complete`` adds them where needed.
    level: str = "full"


def sniff(head: bytes, size: int) -> FileFormat:
    """The format ``head`` (the first bytes of a ``size``-byte file) announces."""
    if head[:2] == b"MZ" and len(head) >= 0x40:
        lfanew = struct.unpack_from("<I", head, 0x3C)[0]
        if pe.looks_like_pe(head) or lfanew + 4 > size:
            return FileFormat.PE
    if elf.looks_like_elf(head):
        return FileFormat.ELF
    if _looks_like_macho(head, size):
        return FileFormat.MACHO
    if len(head) >= 24 and head[:4] == b"\x04\0\0\0" and head[16:24] == b'{"files"':
        return FileFormat.ASAR
    return FileFormat.DATA


def _looks_like_macho(head: bytes, size: int) -> bool:
    """A thin Mach-O magic, or a fat one (tentatively: ``analyze`` reads the fat table to
    tell a universal binary from a Java class, see ``cafebabe``)."""
    if len(head) < 8:
        return False
    if head[:4] in cafebabe.FAT_MAGICS:
        return cafebabe.classify_head(head, size) in (None, "macho")
    return head[:4] in cafebabe.MACHO_MAGICS


def analyze(
    blob: Blob, name: str, ctx: AnalysisContext | None = None, sha256: str | None = None
) -> tuple[str, BinaryFacts]:
    """``(sha256, facts)`` of ``blob`` (``name`` is for messages), every digest in one pass.

    ``sha256``: the blob's digest when the caller already has it (unpack hashed the file):
    it is not computed again.
    """
    ctx = ctx or AnalysisContext()
    head = blob.read(0, SNIFF)
    fmt = sniff(head, blob.size)
    fat = fmt == FileFormat.MACHO and head[:4] in cafebabe.FAT_MAGICS
    if fat and cafebabe.classify(blob.read, blob.size) != "macho":
        fmt = FileFormat.DATA  # a Java class, or bytes no loader would run
    handler = _HANDLERS.get(fmt, _analyze_plain)
    try:
        return handler(blob, name, ctx, head, fmt, sha256)
    except MalformedInputError as exc:
        return _malformed(blob, name, fmt, exc)
    except _PARSER_SLIPS as exc:
        # A parser of another stage (Mach-O, Authenticode) that let a low-level error
        # through: still the input's fault as far as the verdict goes, never a crash.
        err = MalformedInputError(f"{type(exc).__name__}: {exc}")
        return _malformed(blob, name, fmt, err)


def _malformed(
    blob: Blob, name: str, fmt: FileFormat, exc: MalformedInputError
) -> tuple[str, BinaryFacts]:
    sha = sha256_file(blob.path, blob.offset, blob.size)
    msg = f"{name}: cannot parse as {fmt.value}: {exc.message}"
    anomaly = Anomaly("malformed-input", msg, {"format": fmt.value})
    return sha, BinaryFacts(format=fmt, anomalies=(anomaly,))


def _analyze_plain(
    blob: Blob,
    name: str,
    ctx: AnalysisContext,
    head: bytes,
    fmt: FileFormat,
    known: str | None = None,
) -> tuple[str, BinaryFacts]:
    """ASAR and data: the plain sha256 only (ASAR members are inventoried by unpack)."""
    sha = known or sha256_file(blob.path, blob.offset, blob.size)
    return sha, BinaryFacts(format=fmt, normalized_sha256=sha)


def _stream(blob: Blob, views: list[View]) -> None:
    digest_views(blob.path, views, blob.offset, blob.size)


def _markers(scan: FuseScanner) -> dict[str, str]:
    return {"electron_version": scan.electron_version} if scan.electron_version else {}


# --- PE ------------------------------------------------------------------------------------


@dataclass
class _PEViews:
    sha: View
    normalized: View
    header: View
    overlay: View
    checksum: pe.PEChecksum
    scan: FuseScanner
    sections: list[tuple[pe.PESection, FuseMaskedView]]
    authenticode: dict[str, View]
    normalized_skipped: bool = False

    def all(self, with_sha: bool = True, core: bool = False) -> list[View]:
        """Every view; ``with_sha=False`` leaves out the plain sha256 (already known);
        ``core`` leaves out the sections, and the normalised digest unless a SHA-256
        Authenticode view computes the same digest (then it costs nothing)."""
        views = [self.header, self.overlay, self.checksum, self.scan]
        if not core or self.normalized_is_free():
            views.insert(0, self.normalized)
        else:
            self.normalized_skipped = True
        if with_sha:
            views.insert(0, self.sha)
        sections = [] if core else [v for _, v in self.sections]
        return views + sections + list(self.authenticode.values())

    def normalized_is_free(self) -> bool:
        n = self.normalized
        return any(
            (a.algorithm, a.start, a.end, tuple(a.skip), tuple(a.mask))
            == (n.algorithm, n.start, n.end, tuple(n.skip), tuple(n.mask))
            for a in self.authenticode.values()
        )


def pe_views(info: pe.PEInfo, pad: Span, algorithms: frozenset[str] = frozenset()) -> _PEViews:
    """The views one pass over a PE file feeds (docs/contract.md "Upstream references")."""
    overlay_skip = (*((info.cert_span,) if info.cert_span else ()), pad)
    auth = {
        alg: View(f"authenticode-{alg}", alg, skip=info.authenticode_skip())
        for alg in sorted(algorithms)
        if alg in hashlib.algorithms_available
    }
    scan = FuseScanner()
    return _PEViews(
        sha=View("sha256"),
        normalized=View("normalized", skip=pe.normalized_skip(info, pad)),
        header=View("header", end=info.size_of_headers, mask=pe.rcedit_mask(info)),
        overlay=View("overlay", start=info.last_section_end, skip=overlay_skip),
        checksum=pe.PEChecksum(info.checksum_offset, info.file_size),
        scan=scan,  # fed before the sections, which take its wires
        sections=[
            (
                s,
                FuseMaskedView(
                    f"section-{s.index}", start=s.raw_pointer, end=s.raw_span.end, scanner=scan
                ),
            )
            for s in info.sections
        ],
        authenticode=auth,
    )


def _authenticode_module() -> ModuleType | None:
    """``verifier.signing.authenticode`` when it is installed (another stage owns it)."""
    try:
        return importlib.import_module("verifier.signing.authenticode")
    except ImportError:
        return None


def _analyze_pe(
    blob: Blob,
    name: str,
    ctx: AnalysisContext,
    head: bytes,
    fmt: FileFormat,
    known: str | None = None,
) -> tuple[str, BinaryFacts]:
    info = pe.parse_pe(head, blob.size)
    anomalies: list[Anomaly] = []
    shape = _pe_shape(blob, info, name, anomalies)
    table_bytes = _read_cert_table(blob, info, name, anomalies)
    auth = _authenticode_module() if ctx.verify_signatures else None
    table = None
    if auth is not None and table_bytes is not None:
        table = auth.parse_table(
            table_bytes,
            table_offset=info.cert_offset,
            dir_size=info.cert_size,
            file_size=info.file_size,
            last_section_end=info.last_section_end,
        )
    algorithms = frozenset(table.digest_algorithms) if table is not None else frozenset()
    v = pe_views(info, pe.read_alignment_pad(blob, info), algorithms)
    core = ctx.level == "core"
    table_end = info.cert_offset + info.cert_size
    after = View("after-table", start=table_end) if 0 < table_end < info.file_size else None
    _stream(blob, [*v.all(with_sha=known is None, core=core), *((after,) if after else ())])
    if core:
        v.sections = []
    checksum_ok = info.checksum in (0, v.checksum.value)
    if table is not None and auth is not None:
        digests = {alg: view.hexdigest() for alg, view in v.authenticode.items()}
        sig, extra = auth.verify(
            table, digests, pe_checksum_ok=checksum_ok, trust=ctx.trust, at=ctx.at
        )
        region = after.hexdigest() if after is not None else None
        anomalies.extend(
            replace(a, region_sha256=region)
            if a.rule == "data-after-signature" and a.region_sha256 is None
            else a
            for a in extra
        )
    else:
        sig = _basic_signature(table_bytes)
        if not checksum_ok:
            anomalies.append(_checksum_anomaly(info, v.checksum.value))
    return known or v.sha.hexdigest(), _pe_facts(info, v, shape, sig, anomalies)


def _basic_signature(table_bytes: bytes | None) -> SignatureFacts:
    """Signature facts without the Authenticode verifier: present or not, never 'valid'."""
    if table_bytes is None:
        return UNSIGNED
    digest = hashlib.sha256(table_bytes).hexdigest()
    return SignatureFacts(
        kind=SignatureKind.AUTHENTICODE,
        signed=True,
        valid=None,
        container_sha256=digest,
        primary_container_sha256=digest,
    )


def _checksum_anomaly(info: pe.PEInfo, computed: int) -> Anomaly:
    return Anomaly(
        "pe-checksum-mismatch",
        f"PE checksum field is {info.checksum:#010x}, the file's checksum is {computed:#010x}",
        {"stored": info.checksum, "computed": computed},
    )


def _read_cert_table(
    blob: Blob, info: pe.PEInfo, name: str, anomalies: list[Anomaly]
) -> bytes | None:
    if not info.cert_size:
        return None
    if info.cert_size > MAX_CERT_TABLE:
        anomalies.append(
            Anomaly(
                "malformed-input",
                f"{name}: certificate table of {info.cert_size} bytes exceeds the "
                f"{MAX_CERT_TABLE}-byte cap",
                {"ranges": [{"offset": info.cert_offset, "length": info.cert_size}]},
            )
        )
        return None
    return blob.read(info.cert_offset, info.cert_size)


def _pe_shape(blob: Blob, info: pe.PEInfo, name: str, anomalies: list[Anomaly]) -> CodeShape:
    """Imports/exports/TLS digests; a hostile table becomes an anomaly, not a lost file."""
    execs = tuple(s.name for s in info.sections if s.executable)
    try:
        sh = pe.read_shape(blob, info)
    except MalformedInputError as exc:
        anomalies.append(Anomaly("malformed-input", f"{name}: {exc.message}", {"format": "pe"}))
        return CodeShape(entry_point=info.entry_point, executable_sections=execs)
    return CodeShape(
        entry_point=sh.entry_point,
        imports_sha256=sh.imports_sha256,
        exports_sha256=sh.exports_sha256,
        tls_callbacks=sh.tls_callbacks,
        executable_sections=sh.executable_sections,
    )


def _pe_facts(
    info: pe.PEInfo,
    v: _PEViews,
    shape: CodeShape,
    sig: SignatureFacts,
    anomalies: list[Anomaly],
) -> BinaryFacts:
    sections = tuple(
        SectionDigest(
            name=s.name,
            size=s.raw_size,
            sha256=view.hexdigest(),
            executable=s.executable,
            masked_sha256=view.masked_hexdigest(),
        )
        for s, view in v.sections
    )
    rules = tuple(sorted({*sig.anomalies, *(a.rule for a in anomalies)}))
    return BinaryFacts(
        format=FileFormat.PE,
        archs=(info.arch,),
        normalized_sha256=None if v.normalized_skipped else v.normalized.hexdigest(),
        header_sha256=v.header.hexdigest(),
        sections=sections,
        overlay_sha256=v.overlay.hexdigest(),
        fuses=v.scan.fuses,
        shape=shape,
        signature=_with_rules(sig, rules),
        anomalies=tuple(anomalies),
        markers=_markers(v.scan),
    )


def _with_rules(sig: SignatureFacts, rules: tuple[str, ...]) -> SignatureFacts:
    if sig.kind == SignatureKind.NONE or rules == tuple(sorted(set(sig.anomalies))):
        return sig
    return replace(sig, anomalies=rules)


# --- ELF -----------------------------------------------------------------------------------


def _analyze_elf(
    blob: Blob,
    name: str,
    ctx: AnalysisContext,
    head: bytes,
    fmt: FileFormat,
    known: str | None = None,
) -> tuple[str, BinaryFacts]:
    info = elf.read_elf_info(blob)
    sha, scan = View("sha256"), FuseScanner()
    secs = [
        (s, FuseMaskedView(f"elf-{i}", start=s.offset, end=s.offset + s.size, scanner=scan))
        for i, s in enumerate(info.sections)
        if s.size and s.name
    ]
    if ctx.level == "core":
        secs = []  # section digests only matter against a different file
    _stream(blob, [*(() if known else (sha,)), scan, *(v for _, v in secs)])
    digest = known or sha.hexdigest()
    facts = BinaryFacts(
        format=FileFormat.ELF,
        archs=(info.arch,),
        normalized_sha256=digest,
        sections=tuple(
            SectionDigest(s.name, s.size, v.hexdigest(), s.executable, v.masked_hexdigest())
            for s, v in secs
        ),
        fuses=scan.fuses,
        shape=CodeShape(
            entry_point=info.entry,
            executable_sections=tuple(s.name for s in info.sections if s.executable),
        ),
        markers=_markers(scan),
    )
    return digest, facts


# --- Mach-O --------------------------------------------------------------------------------

MACHO_CPUS = {
    7: "i386",
    0x01000007: "x86_64",
    12: "arm",
    0x0100000C: "arm64",
    0x0200000C: "arm64_32",
    18: "ppc",
    0x01000012: "ppc64",
}


def _macho_module() -> ModuleType | None:
    try:
        mod = importlib.import_module("verifier.binary.macho")
    except ImportError:
        return None
    return mod if hasattr(mod, "analyze_macho") else None


def _analyze_macho(
    blob: Blob,
    name: str,
    ctx: AnalysisContext,
    head: bytes,
    fmt: FileFormat,
    known: str | None = None,
) -> tuple[str, BinaryFacts]:
    mod = _macho_module()
    if mod is None:
        return analyze_macho_basic(blob, head)
    fn: Callable[..., Any] = mod.analyze_macho
    result = fn(blob, name, ctx)
    if isinstance(result, BinaryFacts):
        return sha256_file(blob.path, blob.offset, blob.size), result
    sha, facts = result
    return str(sha), facts


def macho_archs(head: bytes) -> tuple[str, ...]:
    """Architectures named by a thin or fat Mach-O header (bounded; no load commands)."""
    magic = head[:4]
    if magic in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        nfat = struct.unpack_from(">I", head, 4)[0]
        step = 32 if magic == b"\xca\xfe\xba\xbf" else 20
        if 8 + step * nfat > len(head):
            raise MalformedInputError("fat Mach-O header truncated")
        cpus = [struct.unpack_from(">I", head, 8 + step * i)[0] for i in range(nfat)]
    else:
        if len(head) < 28:
            raise MalformedInputError("Mach-O header truncated")
        endian = ">" if magic in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf") else "<"
        cpus = [struct.unpack_from(endian + "I", head, 4)[0]]
    return tuple(MACHO_CPUS.get(c, f"cpu-{c:#x}") for c in cpus)


def analyze_macho_basic(blob: Blob, head: bytes) -> tuple[str, BinaryFacts]:
    """Fallback when ``binary.macho`` is absent: format, archs, sha256, fuses, marker."""
    archs = macho_archs(head)
    sha, scan = View("sha256"), FuseScanner()
    _stream(blob, [sha, scan])
    facts = BinaryFacts(
        format=FileFormat.MACHO, archs=archs, fuses=scan.fuses, markers=_markers(scan)
    )
    return sha.hexdigest(), facts


_Handler = Callable[
    [Blob, str, AnalysisContext, bytes, FileFormat, str | None], tuple[str, BinaryFacts]
]

_HANDLERS: dict[FileFormat, _Handler] = {
    FileFormat.PE: _analyze_pe,
    FileFormat.ELF: _analyze_elf,
    FileFormat.MACHO: _analyze_macho,
}

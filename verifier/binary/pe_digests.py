"""What one streaming pass over a PE file computes, and the facts made from it.

``pe_views`` builds the ``hashing.View``s a single read of the file feeds (docs/contract.md
"Upstream references"): the plain sha256, the normalised digest, the rcedit-masked headers,
the overlay, the PE checksum, the Electron fuse scan, per-section digests and the
Authenticode digests the signature asks for. ``pe_facts`` turns the fed views, the code
shape and the signature facts (verified by ``signing.pe_signature``) into ``BinaryFacts``.
Nothing here verifies a signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from verifier.binary import pe
from verifier.binary.fuses import FuseMaskedView, FuseScanner
from verifier.errors import MalformedInputError
from verifier.hashing import Span, View
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Blob,
    CodeShape,
    FileFormat,
    SectionDigest,
    SignatureFacts,
    SignatureKind,
)

MAX_CERT_TABLE = 16 << 20


@dataclass
class PEViews:
    sha: View
    normalized: View
    header: View
    overlay: View
    checksum: pe.PEChecksum
    scan: FuseScanner
    sections: list[tuple[pe.PESection, FuseMaskedView]]
    authenticode: dict[str, View]
    stored_checksum: int  # the header's CheckSum field: 0 means "not set", nothing to check
    normalized_skipped: bool = False

    def all(self, with_sha: bool = True, core: bool = False) -> list[View]:
        """Every view; ``with_sha=False`` leaves out the plain sha256 (already known);
        ``core`` leaves out the sections, and the normalised digest unless a SHA-256
        Authenticode view computes the same digest (then it costs nothing)."""
        views: list[View] = [self.header, self.overlay]
        if self.stored_checksum:
            views.append(self.checksum)
        views.append(self.scan)
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


def pe_views(info: pe.PEInfo, pad: Span, algorithms: frozenset[str] = frozenset()) -> PEViews:
    """The views one pass over a PE file feeds (docs/contract.md "Upstream references")."""
    overlay_skip = (*((info.cert_span,) if info.cert_span else ()), pad)
    auth = {
        alg: View(f"authenticode-{alg}", alg, skip=info.authenticode_skip())
        for alg in sorted(algorithms)
        if alg in hashlib.algorithms_available
    }
    scan = FuseScanner()
    return PEViews(
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
        stored_checksum=info.checksum,
    )


def read_cert_table(
    blob: Blob, info: pe.PEInfo, name: str, anomalies: list[Anomaly]
) -> bytes | None:
    """The certificate table's bytes (None when unsigned, or over the cap: an anomaly)."""
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


def pe_shape(blob: Blob, info: pe.PEInfo, name: str, anomalies: list[Anomaly]) -> CodeShape:
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


def checksum_anomaly(info: pe.PEInfo, computed: int) -> Anomaly:
    """``pe-checksum-mismatch`` for a file whose signature is not verified."""
    return Anomaly(
        "pe-checksum-mismatch",
        f"PE checksum field is {info.checksum:#010x}, the file's checksum is {computed:#010x}",
        {"stored": info.checksum, "computed": computed},
    )


def checksum_ok(info: pe.PEInfo, v: PEViews) -> bool:
    """Whether the header's CheckSum is right (0 means "not set": always right)."""
    return info.checksum == 0 or info.checksum == v.checksum.value


def pe_facts(
    info: pe.PEInfo,
    v: PEViews,
    shape: CodeShape,
    sig: SignatureFacts,
    anomalies: list[Anomaly],
) -> BinaryFacts:
    """The facts of a PE file once its views are fed and its signature judged."""
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
        markers=v.scan.found_markers(),
    )


def _with_rules(sig: SignatureFacts, rules: tuple[str, ...]) -> SignatureFacts:
    if sig.kind == SignatureKind.NONE or rules == tuple(sorted(set(sig.anomalies))):
        return sig
    return replace(sig, anomalies=rules)

"""What one streaming pass over an ELF file computes: its sha256, section digests (with
Electron fuse bytes masked), the fuse wire and the Electron marker. ELF files carry no
signature biv verifies, so their analysis is complete here.
"""

from __future__ import annotations

from verifier.binary import elf
from verifier.binary.fuses import FuseMaskedView, FuseScanner
from verifier.hashing import View, digest_views
from verifier.model import BinaryFacts, Blob, CodeShape, FileFormat, SectionDigest


def analyze_elf(blob: Blob, *, core: bool, known: str | None = None) -> tuple[str, BinaryFacts]:
    """``(sha256, facts)``; ``core`` leaves out the section digests (only a comparison with
    a different file needs them); ``known``: the sha256 when the caller has it."""
    info = elf.read_elf_info(blob)
    sha, scan = View("sha256"), FuseScanner()
    secs = [
        (s, FuseMaskedView(f"elf-{i}", start=s.offset, end=s.offset + s.size, scanner=scan))
        for i, s in enumerate(info.sections)
        if s.size and s.name
    ]
    if core:
        secs = []
    views: list[View] = [*(() if known else (sha,)), scan, *(v for _, v in secs)]
    digest_views(blob.path, views, blob.offset, blob.size)
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
        markers=scan.found_markers(),
    )
    return digest, facts

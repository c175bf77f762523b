"""A small Mach-O writer, fat (universal) writer and code signer, for tests and the demo.

``build_thin`` lays out a minimal 64-bit Mach-O (``__TEXT``, ``__DATA``, ``__LINKEDIT``;
``MH_EXECUTE`` with ``LC_MAIN`` or ``MH_DYLIB`` with ``LC_ID_DYLIB``). ``sign`` adds or replaces
the embedded signature: ad-hoc, linker-signed, or a CMS signature by a certificate (for
instance one from ``TestIdentity``, a throwaway "Developer ID"-like PKI). ``build_fat`` /
``write_fat`` join thin slices into a universal file. Nothing here is hardened: it writes
inputs for biv's parsers, it never reads untrusted files.
"""

from __future__ import annotations

import hashlib
import plistlib
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifier.binary import macho as mo
from verifier.record import record
from verifier.signing import codesign as cs

CPU = {
    "x86_64": (0x01000007, 3),
    "arm64": (0x0100000C, 0),
    "arm64e": (0x0100000C, 2),
}
PAGE = 0x1000
MH_EXECUTE = 2
MH_DYLIB = 6


def _seg(
    name: str,
    vmaddr: int,
    vmsize: int,
    fileoff: int,
    filesize: int,
    prot: int,
    sects: Sequence[tuple[str, int, int, int]],
) -> bytes:
    """LC_SEGMENT_64 with sections (sectname, addr, size, offset)."""
    out = struct.pack(
        "<2I16s4Q4I",
        mo.LC_SEGMENT_64,
        72 + 80 * len(sects),
        name.encode(),
        vmaddr,
        vmsize,
        fileoff,
        filesize,
        prot,
        prot,
        len(sects),
        0,
    )
    for sname, addr, size, offset in sects:
        flags = 0x80000400 if sname == "__text" else 0
        out += struct.pack(
            "<16s16s2Q8I",
            sname.encode(),
            name.encode(),
            addr,
            size,
            offset,
            4,
            0,
            0,
            flags,
            0,
            0,
            0,
        )
    return out


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def build_thin(
    arch: str,
    text: bytes,
    data: bytes = b"",
    *,
    dylib: str | None = None,
    linkedit: bytes = b"\x00" * 16,
) -> bytes:
    """An unsigned thin 64-bit Mach-O with ``text`` in ``__TEXT,__text`` and ``data`` in
    ``__DATA,__data`` (put a fuse wire there); ``dylib`` makes an MH_DYLIB with that
    install name, else an MH_EXECUTE with LC_MAIN at the start of ``__text``."""
    cputype, cpusub = CPU[arch]
    base = 0x100000000 if dylib is None else 0
    text_off = PAGE
    text_size = _align(max(len(text), 1), PAGE)
    data_off = text_off + text_size
    data_size = _align(max(len(data), 1), PAGE)
    le_off = data_off + data_size
    cmds = [
        _seg("__PAGEZERO", 0, base, 0, 0, 0, []) if dylib is None else b"",
        _seg(
            "__TEXT",
            base,
            text_off + text_size,
            0,
            text_off + text_size,
            5,
            [("__text", base + text_off, len(text), text_off)],
        ),
        _seg(
            "__DATA",
            base + data_off,
            data_size,
            data_off,
            data_size,
            3,
            [("__data", base + data_off, len(data), data_off)],
        ),
        _seg(
            "__LINKEDIT", base + le_off, _align(len(linkedit), PAGE), le_off, len(linkedit), 1, []
        ),
    ]
    if dylib is None:
        cmds.append(struct.pack("<2I2Q", mo.LC_MAIN, 24, text_off, 0))
    else:
        name = dylib.encode() + b"\0"
        size = _align(24 + len(name), 8)
        cmds.append(
            struct.pack("<4I", mo.LC_ID_DYLIB, size, 24, 2)
            + struct.pack("<2I", 0x10000, 0x10000)
            + name.ljust(size - 24, b"\0")
        )
    cmds = [c for c in cmds if c]
    body = b"".join(cmds)
    hdr = struct.pack(
        "<8I",
        mo.MH_MAGIC_64,
        cputype,
        cpusub,
        MH_DYLIB if dylib else MH_EXECUTE,
        len(cmds),
        len(body),
        0x00200085,
        0,
    )
    out = bytearray(le_off + len(linkedit))
    out[: len(hdr) + len(body)] = hdr + body
    out[text_off : text_off + len(text)] = text
    out[data_off : data_off + len(data)] = data
    out[le_off:] = linkedit
    return bytes(out)


def fuse_wire(values: str = "1101", version: int = 1) -> bytes:
    return mo.FUSE_SENTINEL + bytes([version, len(values)]) + values.encode()


# --- signing -------------------------------------------------------------------------------


@dataclass
class TestIdentity:
    """A throwaway PKI: root CA -> "Developer ID Application: <org> (<team>)" leaf."""

    org: str = "Example Vendor Ltd"
    team_id: str = "EXAMPLE123"
    root_name: str = "biv test code signing root"
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    root: x509.Certificate = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime(2024, 1, 1, tzinfo=UTC)
        rname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.root_name)])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(rname)
            .issuer_name(rname)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        cn = f"Developer ID Application: {self.org} ({self.team_id})"
        lname = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.team_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.org),
            ]
        )
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(lname)
            .issuer_name(rname)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365 * 20))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


def _code_directory(
    code: bytes,
    identifier: str,
    *,
    flags: int,
    hash_type: int,
    specials: dict[int, bytes],
    team_id: str | None,
    exec_seg: tuple[int, int, int],
) -> bytes:
    algo, hsize = cs.HASH_TYPES[hash_type]
    n_special = max(specials) if specials else 0
    n_code = -(-len(code) // PAGE)
    ident = identifier.encode() + b"\0"
    team = (team_id.encode() + b"\0") if team_id else b""
    hdr_len = 88
    ident_off = hdr_len
    team_off = ident_off + len(ident) if team else 0
    hash_off = hdr_len + len(ident) + len(team) + n_special * hsize
    length = hash_off + n_code * hsize
    out = bytearray(length)
    struct.pack_into(
        ">9I4BI",
        out,
        0,
        cs.CSMAGIC_CODEDIRECTORY,
        length,
        0x20400,
        flags,
        hash_off,
        ident_off,
        n_special,
        n_code,
        len(code),
        hsize,
        hash_type,
        0,
        12,
        0,
    )
    struct.pack_into(">2I", out, 44, 0, team_off)  # scatter, team
    struct.pack_into(">IQ", out, 52, 0, 0)  # spare3, codeLimit64
    struct.pack_into(">3Q", out, 64, *exec_seg)
    out[ident_off : ident_off + len(ident)] = ident
    if team:
        out[team_off : team_off + len(team)] = team
    for n, content in specials.items():
        h = hashlib.new(algo, content).digest()[:hsize]
        o = hash_off - n * hsize
        out[o : o + hsize] = h
    for i in range(n_code):
        h = hashlib.new(algo, code[i * PAGE : (i + 1) * PAGE]).digest()[:hsize]
        o = hash_off + i * hsize
        out[o : o + hsize] = h
    return bytes(out)


def _blob(magic: int, payload: bytes) -> bytes:
    return struct.pack(">2I", magic, 8 + len(payload)) + payload


def _superblob(entries: Sequence[tuple[int, bytes]]) -> bytes:
    off = 12 + 8 * len(entries)
    index = b""
    body = b""
    for slot, blob in entries:
        index += struct.pack(">2I", slot, off + len(body))
        body += blob
    return (
        struct.pack(">3I", cs.CSMAGIC_EMBEDDED_SIGNATURE, off + len(body), len(entries))
        + index
        + body
    )


def make_cms(cds: Sequence[bytes], identity: TestIdentity, when: datetime | None = None) -> bytes:
    """A detached CMS SignedData over the first CodeDirectory, Apple style (cdhashes)."""
    from asn1crypto import algos, cms, core
    from asn1crypto import x509 as ax509

    when = when or datetime(2025, 6, 1, tzinfo=UTC)
    cdhashes = [hashlib.new(cs.HASH_TYPES[cd[37]][0], cd).digest()[:20] for cd in cds]
    plist = plistlib.dumps({"cdhashes": cdhashes}, fmt=plistlib.FMT_XML)
    attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(cds[0]).digest()]}
            ),
            cms.CMSAttribute({"type": cs.OID_CDHASHES_PLIST, "values": [core.OctetString(plist)]}),
        ]
    )
    signed = b"\x31" + attrs.dump()[1:]
    sig = identity.key.sign(signed, ec.ECDSA(hashes.SHA256()))
    leaf = ax509.Certificate.load(identity.cert.public_bytes(serialization.Encoding.DER))
    root = ax509.Certificate.load(identity.root.public_bytes(serialization.Encoding.DER))
    si = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": leaf.issuer, "serial_number": leaf.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": sig,
        }
    )
    sd = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},
            "certificates": [leaf, root],
            "signer_infos": [si],
        }
    )
    out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()
    return out


def sign(
    binary: bytes,
    identifier: str,
    *,
    identity: TestIdentity | None = None,
    linker_signed: bool = False,
    info_plist: bytes | None = None,
    resources: bytes | None = None,
    entitlements: bytes | None = None,
    hash_types: Sequence[int] = (2,),
) -> bytes:
    """Sign a thin 64-bit little-endian Mach-O (replacing any signature): ad-hoc by default,
    linker-signed, or with a CMS signature by ``identity``."""
    h = mo.parse_slice_header(binary[: 32 + struct.unpack_from("<I", binary, 20)[0]], len(binary))
    le = h.linkedit
    assert le is not None, "needs a __LINKEDIT segment"
    buf = bytearray(binary)
    cmd_off, dataoff = _make_room(buf, h)
    flags = cs.CS_ADHOC | cs.CS_LINKER_SIGNED if linker_signed else 0
    if identity is None and not linker_signed:
        flags = cs.CS_ADHOC
    reqs = _blob(cs.CSMAGIC_REQUIREMENTS, struct.pack(">I", 0))
    ents = _blob(cs.CSMAGIC_EMBEDDED_ENTITLEMENTS, entitlements) if entitlements else None
    specials: dict[int, bytes] = {}
    if not linker_signed:
        specials[cs.CSSLOT_REQUIREMENTS] = reqs
        if info_plist is not None:
            specials[cs.CSSLOT_INFOSLOT] = info_plist
        if resources is not None:
            specials[cs.CSSLOT_RESOURCEDIR] = resources
        if ents is not None:
            specials[cs.CSSLOT_ENTITLEMENTS] = ents
    text = next((s for s in h.segments if s.name == "__TEXT"), None)
    exec_seg = (
        (text.fileoff, text.filesize, 1 if h.filetype == MH_EXECUTE else 0) if text else (0, 0, 0)
    )
    plan = _Plan(
        identifier,
        flags,
        tuple(hash_types),
        specials,
        identity.team_id if identity else None,
        exec_seg,
        reqs,
        ents,
        identity,
        linker_signed,
    )
    place = _Place(le.fileoff, le.cmd_offset, cmd_off, dataoff)
    trial = _assemble(buf, place, 0, plan)
    size = _align(len(trial) + (256 if identity else 0), 16)
    sb = _assemble(buf, place, size, plan)
    assert len(sb) <= size
    return bytes(buf) + sb + b"\0" * (size - len(sb))


def _make_room(buf: bytearray, h: mo.SliceHeader) -> tuple[int, int]:
    """Drop the old signature, or add an ``LC_CODE_SIGNATURE`` command in the free space
    after the load commands; pad to the signature's offset. Returns (command offset, data
    offset)."""
    if h.code_signature is not None:
        cmd_off, dataoff, _size = h.code_signature
        del buf[dataoff:]
    else:
        end = 32 + h.sizeofcmds
        first = min((s.offset for s in h.sections if s.offset), default=len(buf))
        assert end + 16 <= first and not any(buf[end : end + 16]), "no room for LC_CODE_SIGNATURE"
        cmd_off = end
        dataoff = _align(len(buf), 16)
        struct.pack_into("<2I", buf, 16, h.ncmds + 1, h.sizeofcmds + 16)
    dataoff = _align(dataoff, 16)
    buf.extend(b"\0" * (dataoff - len(buf)))
    return cmd_off, dataoff


@record
class _Plan:
    """What a signature will hold (everything but its size and the code it hashes)."""

    identifier: str
    flags: int
    hash_types: tuple[int, ...]
    specials: dict[int, bytes]
    team_id: str | None
    exec_seg: tuple[int, int, int]
    requirements: bytes
    entitlements: bytes | None
    identity: TestIdentity | None
    linker_signed: bool


@record
class _Place:
    """Where the signature goes: ``__LINKEDIT``'s file offset and command, the
    ``LC_CODE_SIGNATURE`` command, the signature's data offset."""

    linkedit_fileoff: int
    linkedit_cmd: int
    cmd_off: int
    dataoff: int


def _assemble(buf: bytearray, at: _Place, size_hint: int, plan: _Plan) -> bytes:
    """Point the load commands at a signature of ``size_hint`` bytes and build its SuperBlob
    over the code that results."""
    struct.pack_into("<4I", buf, at.cmd_off, mo.LC_CODE_SIGNATURE, 16, at.dataoff, size_hint)
    new_le_size = at.dataoff + size_hint - at.linkedit_fileoff
    struct.pack_into("<Q", buf, at.linkedit_cmd + 32, _align(new_le_size, PAGE))
    struct.pack_into("<Q", buf, at.linkedit_cmd + 48, new_le_size)
    code = bytes(buf[: at.dataoff])
    cds = [
        _code_directory(
            code,
            plan.identifier,
            flags=plan.flags,
            hash_type=t,
            specials=plan.specials,
            team_id=plan.team_id,
            exec_seg=plan.exec_seg,
        )
        for t in plan.hash_types
    ]
    entries: list[tuple[int, bytes]] = [(cs.CSSLOT_CODEDIRECTORY, cds[0])]
    if not plan.linker_signed:
        entries.append((cs.CSSLOT_REQUIREMENTS, plan.requirements))
        if plan.entitlements is not None:
            entries.append((cs.CSSLOT_ENTITLEMENTS, plan.entitlements))
    for i, cd in enumerate(cds[1:]):
        entries.append((cs.CSSLOT_ALTERNATE_CODEDIRECTORIES + i, cd))
    if plan.identity is not None:
        cms_blob = _blob(cs.CSMAGIC_BLOBWRAPPER, make_cms(cds, plan.identity))
        entries.append((cs.CSSLOT_SIGNATURESLOT, cms_blob))
    elif not plan.linker_signed:
        entries.append((cs.CSSLOT_SIGNATURESLOT, _blob(cs.CSMAGIC_BLOBWRAPPER, b"")))
    return _superblob(entries)


# --- fat files -----------------------------------------------------------------------------


def _fat_layout(sizes_archs: Sequence[tuple[str, int, int, int]]) -> tuple[bytes, list[int]]:
    """Header and slice offsets for (arch, cputype, cpusubtype, size) entries."""
    offsets: list[int] = []
    pos = 0x4000
    hdr = struct.pack(">2I", mo.FAT_MAGIC, len(sizes_archs))
    for _arch, ct, cst, size in sizes_archs:
        pos = _align(pos, 0x4000)
        offsets.append(pos)
        hdr += struct.pack(">5I", ct, cst, pos, size, 14)
        pos += size
    return hdr, offsets


def _cpu_of(head: bytes) -> tuple[int, int]:
    ct, cst = struct.unpack_from("<2I", head, 4)
    return int(ct), int(cst)


def build_fat(slices: Sequence[bytes]) -> bytes:
    """Join thin Mach-O images into a universal binary (in memory)."""
    entries = [("", *_cpu_of(s), len(s)) for s in slices]
    hdr, offsets = _fat_layout(entries)
    out = bytearray(hdr)
    for off, s in zip(offsets, slices, strict=True):
        out.extend(b"\0" * (off - len(out)))
        out.extend(s)
    return bytes(out)


def write_fat(out_path: str, inputs: Sequence[str]) -> None:
    """Join thin Mach-O files into a universal file, streaming (for large binaries)."""
    entries = []
    for p in inputs:
        with open(p, "rb") as fh:
            head = fh.read(12)
        entries.append(("", *_cpu_of(head), Path(p).stat().st_size))
    hdr, offsets = _fat_layout(entries)
    with open(out_path, "wb") as out:
        out.write(hdr)
        for off, p in zip(offsets, inputs, strict=True):
            out.write(b"\0" * (off - out.tell()))
            with open(p, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)


def thin_slices(fat: bytes) -> list[bytes]:
    """Split a universal binary (trusted input) into its thin images."""
    return [fat[a.offset : a.offset + a.size] for a in mo.parse_fat(fat[:4096], len(fat))]

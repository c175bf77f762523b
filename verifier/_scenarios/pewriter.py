"""A small writer of real, valid PE files (PE32+ and PE32, EXE and DLL).

Why: the tests and ``biv demo`` need Windows binaries that look like Electron's
(``electron.exe`` with a fuse wire, ``ffmpeg.dll``...) and that real tools (osslsigncode) can
sign and verify, without shipping third-party binaries. The writer lays out ``.text`` (real
x86/x64 code), ``.rdata`` (imports, exports, TLS directory, strings), ``.data``, optional extra
sections, ``.rsrc`` (VS_VERSIONINFO, icons) and ``.reloc``, with correct alignment,
SizeOfImage and checksum, deterministically (fixed timestamp).

An rcedit-like variant (different version strings and a bigger icon) changes only ``.rsrc``,
which grows and moves ``.reloc`` after it, exactly as rcedit does to ``electron.exe``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from verifier.binary.fuses import SENTINEL
from verifier.binary.pe import pe_checksum
from verifier.record import record

FILE_ALIGN = 0x200
SECT_ALIGN = 0x1000
TIMESTAMP = 0x5F5E1000  # fixed: deterministic output

SCN_CODE = 0x60000020  # CNT_CODE | MEM_EXECUTE | MEM_READ
SCN_RDATA = 0x40000040  # CNT_INITIALIZED_DATA | MEM_READ
SCN_DATA = 0xC0000040  # + MEM_WRITE
SCN_RELOC = 0x42000040  # + MEM_DISCARDABLE


@record
class ExtraSection:
    """An additional section placed after ``.data`` (e.g. injected code)."""

    name: str
    data: bytes
    characteristics: int = SCN_CODE


@record
class PESpec:
    """What to write. Defaults give a small x64 console EXE importing ExitProcess."""

    dll: bool = False
    is64: bool = True
    name: str = "app.exe"
    imports: tuple[tuple[str, tuple[str, ...]], ...] = (("KERNEL32.dll", ("ExitProcess",)),)
    exports: tuple[str, ...] = ()  # function names (DLL only); each a 'return 0' function
    fuses: str | None = None  # e.g. "01rr1"; writes the Electron fuse wire into .rdata
    fuse_version: int = 1
    electron_version: str | None = None  # writes "Electron/X.Y.Z" into .rdata
    rdata_extra: bytes = b""  # filler, to give sections realistic sizes
    text_extra: bytes = b""  # extra code appended to .text (after the functions)
    data_size: int = 0x40
    tls_callbacks: int = 0
    extra_sections: tuple[ExtraSection, ...] = ()
    entry_in_extra: bool = False  # entry point at the start of the first extra section
    version_strings: tuple[tuple[str, str], ...] = (
        ("CompanyName", "Example"),
        ("FileDescription", "Example"),
        ("FileVersion", "1.0.0.0"),
        ("ProductName", "Example"),
        ("ProductVersion", "1.0.0.0"),
    )
    file_version: tuple[int, int, int, int] = (1, 0, 0, 0)
    icon_sizes: tuple[int, ...] = (16,)  # square icon sizes in pixels (32-bit DIBs)
    icon_seed: int = 0
    overlay: bytes = b""  # bytes appended after the last section
    gui: bool = False
    # extra resources (type, name, data); str type/name become named entries, as
    # electron-builder writes the ASAR integrity resource INTEGRITY/ELECTRONASAR
    named_resources: tuple[tuple[int | str, int | str, bytes], ...] = ()


# --- small helpers -------------------------------------------------------------------------


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pad(b: bytes | bytearray, a: int) -> bytes:
    return bytes(b) + bytes(_align(len(b), a) - len(b))


def _utf16z(s: str) -> bytes:
    return s.encode("utf-16-le") + b"\0\0"


@dataclass
class _Blob:
    """Section content under construction: bytes plus named offsets and absolute-address fixups."""

    data: bytearray = field(default_factory=bytearray)
    labels: dict[str, int] = field(default_factory=dict)
    fixups: list[int] = field(default_factory=list)  # offsets of pointer-sized VAs

    def add(self, b: bytes, label: str | None = None, align: int = 1) -> int:
        self.data += bytes(_align(len(self.data), align) - len(self.data))
        off = len(self.data)
        if label:
            self.labels[label] = off
        self.data += b
        return off


@record
class _Layout:
    """Where each section and label lands (RVAs), so code can refer to data."""

    base: int
    rva: dict[str, int]  # section name -> RVA
    labels: dict[str, int]  # "section:label" -> RVA

    def at(self, key: str) -> int:
        return self.labels.get(key, 0)


# --- sections ------------------------------------------------------------------------------


def _text(spec: PESpec, lay: _Layout) -> _Blob:
    """Code: entry point, exported 'return 0' functions, TLS callbacks, extra code."""
    b = _Blob()
    rva = lay.rva.get(".text", 0)
    if spec.dll:
        b.add(b"\xb8\x01\x00\x00\x00\xc3", "entry", 16)  # DllMain: mov eax, 1; ret
    elif spec.is64:
        # sub rsp,0x28; xor ecx,ecx; call [rip+IAT(ExitProcess)]; int3
        off = _align(len(b.data), 16)
        iat = lay.at(".rdata:iat:ExitProcess")
        disp = (iat - (rva + off + 4 + 2 + 6)) & 0xFFFFFFFF
        b.add(b"\x48\x83\xec\x28\x31\xc9\xff\x15" + struct.pack("<I", disp) + b"\xcc", "entry", 16)
    else:
        # push 0; call [IAT(ExitProcess)] (absolute address: needs a relocation)
        off = b.add(b"\x6a\x00\xff\x15" + struct.pack("<I", 0) + b"\xcc", "entry", 16)
        iat = lay.at(".rdata:iat:ExitProcess")
        struct.pack_into("<I", b.data, off + 4, (lay.base + iat) & 0xFFFFFFFF)
        b.fixups.append(off + 4)
    for name in spec.exports:
        b.add(b"\x31\xc0\xc3", f"fn:{name}", 16)  # xor eax, eax; ret
    for i in range(spec.tls_callbacks):
        b.add(b"\xc3", f"tls:{i}", 16)  # ret
    b.add(b"\x31\xc0\xc3", "ret0", 16)
    if spec.text_extra:
        b.add(spec.text_extra, "extra", 16)
    return b


def _rdata(spec: PESpec, lay: _Layout) -> _Blob:
    """Imports, exports, TLS directory and callback array, strings, fuse wire."""
    b = _Blob()
    rva = lay.rva.get(".rdata", 0)
    _imports(b, spec, rva)
    if spec.exports:
        _exports(b, spec, rva, lay)
    if spec.tls_callbacks:
        _tls(b, spec, lay)
    if spec.fuses is not None:
        wire = SENTINEL + bytes([spec.fuse_version, len(spec.fuses)]) + spec.fuses.encode()
        b.add(wire, "fuses", 8)
    if spec.electron_version:
        b.add(f"Chrome/120.0.0.0 Electron/{spec.electron_version}\0".encode(), "ua", 8)
    if spec.rdata_extra:
        b.add(spec.rdata_extra, "extra", 16)
    return b


def _imports(b: _Blob, spec: PESpec, rva: int) -> None:
    ptr = 8 if spec.is64 else 4
    fmt = "<Q" if spec.is64 else "<I"
    n = len(spec.imports)
    desc = b.add(bytes(20 * (n + 1)), "imports", 8)
    for i, (dll, names) in enumerate(spec.imports):
        ilt = b.add(bytes(ptr * (len(names) + 1)), None, 8)
        iat = b.add(bytes(ptr * (len(names) + 1)), f"iat:{dll}", 8)
        for j, fn in enumerate(names):
            b.labels[f"iat:{fn}"] = iat + ptr * j
            hint = b.add(struct.pack("<H", 0) + fn.encode() + b"\0", None, 2)
            struct.pack_into(fmt, b.data, ilt + ptr * j, rva + hint)
            struct.pack_into(fmt, b.data, iat + ptr * j, rva + hint)
        name = b.add(dll.encode() + b"\0", None, 2)
        struct.pack_into("<IIIII", b.data, desc + 20 * i, rva + ilt, 0, 0, rva + name, rva + iat)
        if i == 0:
            b.labels["iat"] = iat
    b.labels["iat_end"] = len(b.data)


def _exports(b: _Blob, spec: PESpec, rva: int, lay: _Layout) -> None:
    names = sorted(spec.exports)
    n = len(names)
    d = b.add(bytes(40), "exports", 4)
    funcs = b.add(bytes(4 * n), None, 4)
    name_ptrs = b.add(bytes(4 * n), None, 4)
    ords = b.add(bytes(2 * n), None, 2)
    dll = b.add(spec.name.encode() + b"\0")
    for i, fn in enumerate(names):
        struct.pack_into("<I", b.data, funcs + 4 * i, lay.at(f".text:fn:{fn}"))
        s = b.add(fn.encode() + b"\0")
        struct.pack_into("<I", b.data, name_ptrs + 4 * i, rva + s)
        struct.pack_into("<H", b.data, ords + 2 * i, i)
    struct.pack_into(
        "<IIHHIIIIIII",
        b.data,
        d,
        0,
        TIMESTAMP,
        0,
        0,
        rva + dll,
        1,
        n,
        n,
        rva + funcs,
        rva + name_ptrs,
        rva + ords,
    )
    b.labels["exports_end"] = len(b.data)


def _tls(b: _Blob, spec: PESpec, lay: _Layout) -> None:
    ptr = 8 if spec.is64 else 4
    fmt = "<Q" if spec.is64 else "<I"
    cbs = b.add(bytes(ptr * (spec.tls_callbacks + 1)), "tls_callbacks", 8)
    for i in range(spec.tls_callbacks):
        struct.pack_into(fmt, b.data, cbs + ptr * i, lay.base + lay.at(f".text:tls:{i}"))
        b.fixups.append(cbs + ptr * i)
    tls = b.add(bytes(4 * ptr + 8), "tls", 8)
    rva = lay.rva.get(".rdata", 0)
    data_rva = lay.rva.get(".data", 0)
    vals = (
        lay.base + data_rva + 0x10,  # StartAddressOfRawData
        lay.base + data_rva + 0x18,  # EndAddressOfRawData
        lay.base + data_rva + 0x20,  # AddressOfIndex
        lay.base + rva + cbs,  # AddressOfCallBacks
    )
    for i, v in enumerate(vals):
        struct.pack_into(fmt, b.data, tls + ptr * i, v)
        b.fixups.append(tls + ptr * i)
    b.labels["tls_end"] = len(b.data)


def _data(spec: PESpec, lay: _Layout) -> _Blob:
    """Writable data: a pointer to a function in .text (gives .reloc a DIR64/HIGHLOW entry)."""
    b = _Blob()
    fmt = "<Q" if spec.is64 else "<I"
    off = b.add(struct.pack(fmt, lay.base + lay.at(".text:ret0")), "fnptr", 8)
    b.fixups.append(off)
    b.add(bytes(max(0, spec.data_size - len(b.data))))
    return b


def _extra(sec: ExtraSection) -> Callable[[PESpec, _Layout], _Blob]:
    def build(_spec: PESpec, _lay: _Layout) -> _Blob:
        b = _Blob()
        b.add(sec.data, "start")
        return b

    return build


# --- resources -----------------------------------------------------------------------------


def _vs_node(key: str, value: bytes, wtype: int, children: Sequence[bytes], vlen: int) -> bytes:
    """One VS_VERSIONINFO-style node: wLength, wValueLength, wType, szKey, value, children."""
    body = bytearray(struct.pack("<HHH", 0, vlen, wtype))
    body += _utf16z(key)
    body = bytearray(_pad(body, 4)) + value
    for c in children:
        body = bytearray(_pad(body, 4)) + c
    struct.pack_into("<H", body, 0, len(body))
    return bytes(body)


def version_info(spec: PESpec) -> bytes:
    """A VS_VERSIONINFO resource with StringFileInfo (040904b0) and VarFileInfo."""
    a, b_, c, d = spec.file_version
    ms, ls = (a << 16) | b_, (c << 16) | d
    fixed = struct.pack(
        "<13I",
        0xFEEF04BD,
        0x00010000,
        ms,
        ls,
        ms,
        ls,
        0x3F,
        0,
        0x40004,
        2 if spec.dll else 1,
        0,
        0,
        0,
    )
    strings = [_vs_node(k, _utf16z(v), 1, (), len(v) + 1) for k, v in spec.version_strings]
    table = _vs_node("040904b0", b"", 1, strings, 0)
    sfi = _vs_node("StringFileInfo", b"", 1, [table], 0)
    var = _vs_node("Translation", struct.pack("<HH", 0x0409, 0x04B0), 0, (), 4)
    vfi = _vs_node("VarFileInfo", b"", 1, [var], 0)
    return _vs_node("VS_VERSION_INFO", fixed, 0, [sfi, vfi], len(fixed))


def _icon(size: int, seed: int) -> bytes:
    """A 32-bit DIB icon image (BITMAPINFOHEADER, XOR pixels, AND mask)."""
    hdr = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, 0, 0, 0, 0, 0)
    pixels = bytes(((i * 7 + seed) & 0xFF) for i in range(size * size * 4))
    mask = bytes(_align(size, 32) // 8 * size)
    return hdr + pixels + mask


ResKey = int | str


def _resources(spec: PESpec) -> list[tuple[ResKey, ResKey, bytes]]:
    """(type, id, data) resources: RT_ICON per size, one RT_GROUP_ICON, RT_VERSION, extras."""
    res: list[tuple[ResKey, ResKey, bytes]] = []
    group = bytearray(struct.pack("<HHH", 0, 1, len(spec.icon_sizes)))
    for i, size in enumerate(spec.icon_sizes, start=1):
        img = _icon(size, spec.icon_seed + i)
        res.append((3, i, img))
        group += struct.pack("<BBBBHHIH", size % 256, size % 256, 0, 0, 1, 32, len(img), i)
    if spec.icon_sizes:
        res.append((14, 1, bytes(group)))
    res.append((16, 1, version_info(spec)))
    res.extend(spec.named_resources)
    return res


def _res_order(k: ResKey) -> tuple[int, str, int]:
    """Named entries first (by name), then ids ascending, as the PE format requires."""
    return (0, k.upper(), 0) if isinstance(k, str) else (1, "", k)


def _rsrc(spec: PESpec, lay: _Layout) -> _Blob:
    """A three-level resource directory (type / id / language 0x409) and the data entries."""
    res = _resources(spec)
    types = sorted({t for t, _, _ in res}, key=_res_order)
    by_type = {
        t: sorted(((i, d) for tt, i, d in res if tt == t), key=lambda x: _res_order(x[0]))
        for t in types
    }
    b = _Blob()
    rva = lay.rva.get(".rsrc", 0)

    def header(keys: Sequence[ResKey]) -> bytes:
        named = sum(1 for k in keys if isinstance(k, str))
        n = len(keys)
        return struct.pack("<IIHHHH", 0, 0, 0, 0, named, n - named) + bytes(8 * n)

    name_fixups: list[tuple[int, str]] = []

    def key_field(k: ResKey, at: int) -> int:
        if isinstance(k, str):
            name_fixups.append((at, k))
            return 0
        return k

    root = b.add(header(types))
    leaf_fixups: list[tuple[int, bytes]] = []
    for ti, t in enumerate(types):
        items = by_type[t]
        d = b.add(header([i for i, _ in items]), None, 4)
        slot = root + 16 + 8 * ti
        struct.pack_into("<II", b.data, slot, key_field(t, slot), 0x80000000 | d)
        for ii, (rid, data) in enumerate(items):
            lang = b.add(struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + bytes(8), None, 4)
            slot = d + 16 + 8 * ii
            struct.pack_into("<II", b.data, slot, key_field(rid, slot), 0x80000000 | lang)
            entry = b.add(bytes(16), None, 4)
            struct.pack_into("<II", b.data, lang + 16, 0x409, entry)
            leaf_fixups.append((entry, data))
    for at, name in name_fixups:
        enc = name.encode("utf-16-le")
        off = b.add(struct.pack("<H", len(enc) // 2) + enc, None, 2)
        struct.pack_into("<I", b.data, at, 0x80000000 | off)
    for entry, data in leaf_fixups:
        off = b.add(data, None, 8)
        struct.pack_into("<IIII", b.data, entry, rva + off, len(data), 0, 0)
    return b


def _reloc(pages: dict[int, list[int]], is64: bool) -> bytes:
    """Base relocation blocks: one per 4 KiB page, DIR64 (10) or HIGHLOW (3) entries."""
    kind = 10 if is64 else 3
    out = bytearray()
    for page in sorted(pages):
        entries = [(kind << 12) | (rva - page) for rva in sorted(pages[page])]
        if len(entries) % 2:
            entries.append(0)
        out += struct.pack("<II", page, 8 + 2 * len(entries))
        out += struct.pack(f"<{len(entries)}H", *entries)
    return bytes(out)


# --- assembly ------------------------------------------------------------------------------

_Builder = Callable[[PESpec, _Layout], _Blob]


def _plan(spec: PESpec) -> list[tuple[str, int, _Builder]]:
    plan: list[tuple[str, int, _Builder]] = [
        (".text", SCN_CODE, _text),
        (".rdata", SCN_RDATA, _rdata),
        (".data", SCN_DATA, _data),
    ]
    plan += [(x.name, x.characteristics, _extra(x)) for x in spec.extra_sections]
    plan.append((".rsrc", SCN_RDATA, _rsrc))
    return plan


def _image_base(spec: PESpec) -> int:
    if spec.is64:
        return 0x180000000 if spec.dll else 0x140000000
    return 0x10000000 if spec.dll else 0x400000


def _headers_size(nsections: int, is64: bool) -> int:
    opt = 0xF0 if is64 else 0xE0
    return _align(0x80 + 4 + 20 + opt + 40 * nsections, FILE_ALIGN)


def _build_sections(spec: PESpec) -> tuple[list[tuple[str, int, _Blob, int]], _Layout, int]:
    """Lay out the sections twice: sizes do not depend on addresses, contents do."""
    plan = _plan(spec)
    base = _image_base(spec)
    hdr = _headers_size(len(plan) + 1, spec.is64)
    lay = _Layout(base, {}, {})
    for _ in range(2):
        blobs, rvas, labels = [], {}, {}
        rva = _align(hdr, SECT_ALIGN)
        for name, chars, build in plan:
            blob = build(spec, lay)
            blobs.append((name, chars, blob, rva))
            rvas[name] = rva
            labels.update({f"{name}:{k}": rva + v for k, v in blob.labels.items()})
            rva += _align(max(len(blob.data), 1), SECT_ALIGN)
        lay = _Layout(base, rvas, labels)
    pages: dict[int, list[int]] = {}
    for _name, _c, blob, srva in blobs:
        for f in blob.fixups:
            pages.setdefault((srva + f) & ~0xFFF, []).append(srva + f)
    reloc = _Blob()
    reloc.add(_reloc(pages, spec.is64))
    blobs.append((".reloc", SCN_RELOC, reloc, rva))
    return blobs, lay, hdr


def build_pe(spec: PESpec) -> bytes:
    """The bytes of a PE file described by ``spec`` (deterministic)."""
    blobs, lay, hdr = _build_sections(spec)
    raw_ptr = hdr
    table = bytearray()
    body = bytearray()
    for name, chars, blob, rva in blobs:
        data = _pad(blob.data, FILE_ALIGN) if blob.data else b""
        table += struct.pack(
            "<8sIIIIIIHHI",
            name.encode()[:8],
            max(len(blob.data), 1),
            rva,
            len(data),
            raw_ptr if data else 0,
            0,
            0,
            0,
            0,
            chars,
        )
        body += data
        raw_ptr += len(data)
    end_rva = blobs[-1][3] + _align(max(len(blobs[-1][2].data), 1), SECT_ALIGN)
    entry = (
        lay.at(f"{spec.extra_sections[0].name}:start")
        if (spec.entry_in_extra and spec.extra_sections)
        else lay.at(".text:entry")
    )
    headers = _headers(spec, lay, blobs, bytes(table), hdr, end_rva, entry)
    image = bytearray(headers + body + spec.overlay)
    csum_off = 0x80 + 4 + 20 + 64
    struct.pack_into("<I", image, csum_off, pe_checksum(bytes(image), csum_off))
    return bytes(image)


_DOS_STUB = (
    bytes.fromhex("0e1fba0e00b409cd21b8014ccd21")
    + b"This program cannot be run in DOS mode.\r\r\n$"
)


def _headers(
    spec: PESpec,
    lay: _Layout,
    blobs: list[tuple[str, int, _Blob, int]],
    table: bytes,
    hdr: int,
    size_of_image: int,
    entry: int,
) -> bytes:
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<HHHHH", dos, 2, 0x90, 3, 0, 4, 0)
    struct.pack_into("<H", dos, 0x18, 0x40)
    struct.pack_into("<I", dos, 0x3C, 0x80)
    dos[0x40 : 0x40 + len(_DOS_STUB)] = _DOS_STUB
    machine = 0x8664 if spec.is64 else 0x14C
    chars = 0x0022 if spec.is64 else 0x0102
    if spec.dll:
        chars |= 0x2000
    opt = _optional(spec, lay, blobs, hdr, size_of_image, entry)
    coff = struct.pack("<HHIIIHH", machine, len(blobs), TIMESTAMP, 0, 0, len(opt), chars)
    return _pad(bytes(dos) + b"PE\0\0" + coff + opt + table, FILE_ALIGN)[:hdr]


def _dirs(
    spec: PESpec, lay: _Layout, blobs: list[tuple[str, int, _Blob, int]]
) -> list[tuple[int, int]]:
    dirs = [(0, 0)] * 16
    by = {name: (blob, rva) for name, _c, blob, rva in blobs}
    rd, rrva = by[".rdata"]
    if spec.exports:
        dirs[0] = (rrva + rd.labels["exports"], rd.labels["exports_end"] - rd.labels["exports"])
    dirs[1] = (rrva + rd.labels["imports"], 20 * (len(spec.imports) + 1))
    rs, rsrva = by[".rsrc"]
    dirs[2] = (rsrva, len(rs.data))
    rl, rlrva = by[".reloc"]
    if rl.data:
        dirs[5] = (rlrva, len(rl.data))
    if spec.tls_callbacks:
        dirs[9] = (rrva + rd.labels["tls"], 40 if spec.is64 else 24)
    dirs[12] = (rrva + rd.labels["iat"], rd.labels["iat_end"] - rd.labels["iat"])
    return dirs


def _optional(
    spec: PESpec,
    lay: _Layout,
    blobs: list[tuple[str, int, _Blob, int]],
    hdr: int,
    size_of_image: int,
    entry: int,
) -> bytes:
    code = sum(_align(len(b.data), FILE_ALIGN) for _n, c, b, _r in blobs if c & 0x20)
    init = sum(_align(len(b.data), FILE_ALIGN) for _n, c, b, _r in blobs if not c & 0x20)
    text_rva = lay.rva[".text"]
    sub = 2 if spec.gui else 3
    dllchars = 0x8160 if spec.is64 else 0x8140
    # PE32+ has no BaseOfData and an 8-byte ImageBase and stack/heap sizes
    bases: tuple[int, ...]
    if spec.is64:
        fmt, magic, bases = "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, (lay.base,)
    else:
        fmt, magic, bases = "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII", 0x10B, (lay.rva[".rdata"], lay.base)
    versions = (6, 0, 0, 0, 6, 0, 0)  # OS, image, subsystem (major, minor); Win32VersionValue
    stack_heap = (0x100000, 0x1000, 0x100000, 0x1000)  # reserve, commit; reserve, commit
    head = struct.pack(
        fmt,
        magic,
        14,  # linker version 14.0
        0,
        code,
        init,
        0,  # SizeOfUninitializedData
        entry,
        text_rva,
        *bases,
        SECT_ALIGN,
        FILE_ALIGN,
        *versions,
        size_of_image,
        hdr,
        0,  # CheckSum (set by build_pe)
        sub,
        dllchars,
        *stack_heap,
        0,  # LoaderFlags
        16,  # NumberOfRvaAndSizes
    )
    return head + b"".join(struct.pack("<II", a, s) for a, s in _dirs(spec, lay, blobs))


# --- the demo's cast -----------------------------------------------------------------------

ELECTRON_FUSES = "1101rr10"  # what a fresh electron.exe of the demo carries
_FILLER = bytes(range(256)) * 64


def electron_exe(version: str = "30.0.0", fuses: str = ELECTRON_FUSES) -> PESpec:
    """Upstream ``electron.exe``: fuse wire, ``Electron/X.Y.Z``, version info, small icon."""
    return PESpec(
        name="electron.exe",
        gui=True,
        imports=(
            ("KERNEL32.dll", ("ExitProcess", "GetModuleHandleW")),
            ("ffmpeg.dll", ("av_malloc",)),
        ),
        fuses=fuses,
        electron_version=version,
        tls_callbacks=1,
        text_extra=_FILLER[:3000],
        rdata_extra=_FILLER,
        version_strings=(
            ("CompanyName", "GitHub, Inc."),
            ("FileDescription", "Electron"),
            ("FileVersion", version),
            ("InternalName", "electron.exe"),
            ("OriginalFilename", "electron.exe"),
            ("ProductName", "Electron"),
            ("ProductVersion", version),
        ),
        file_version=_version_tuple(version),
    )


def vendor_exe(
    upstream: PESpec, product: str, version: str = "18.12.416", fuses: str | None = None
) -> PESpec:
    """What rcedit (and optionally @electron/fuses) makes of ``electron.exe``.

    New version strings and a bigger icon set: ``.rsrc`` grows and ``.reloc`` moves; code
    and data are unchanged apart from the fuse bytes when ``fuses`` is given.
    """
    return replace(
        upstream,
        name=f"{product}.exe",
        fuses=upstream.fuses if fuses is None else fuses,
        version_strings=(
            ("CompanyName", f"{product} Ltd"),
            ("FileDescription", f"{product} Desktop App"),
            ("FileVersion", version),
            ("InternalName", f"{product}.exe"),
            ("LegalCopyright", f"Copyright (C) {product} Ltd. All rights reserved."),
            ("OriginalFilename", f"{product}.exe"),
            ("ProductName", product),
            ("ProductVersion", version),
        ),
        file_version=_version_tuple(version),
        icon_sizes=(16, 32, 48, 64),
        icon_seed=7,
    )


FFMPEG_EXPORTS = ("av_free", "av_malloc", "avcodec_open2", "avformat_open_input")


def ffmpeg_dll() -> PESpec:
    return PESpec(
        dll=True,
        name="ffmpeg.dll",
        exports=FFMPEG_EXPORTS,
        imports=(("KERNEL32.dll", ("GetProcAddress", "LoadLibraryW", "VirtualAlloc")),),
        text_extra=_FILLER[:5000],
        rdata_extra=_FILLER[:9000],
        version_strings=(),
        icon_sizes=(),
    )


# 3CX-style loader: x64 code that would map a payload (never run; just real bytes).
_LOADER = (
    bytes.fromhex(
        "4883ec28488d0df9ffffff48c7c2001000004c8d05f0ffffff41b940000000"
        "ff15000000004885c0740731c04883c428c3b8010000004883c428c3"
    )
    * 8
)


def trojaned_ffmpeg_dll(clean: PESpec | None = None) -> PESpec:
    """``ffmpeg.dll`` with an added executable section holding a loader, run at DLL entry."""
    base = clean or ffmpeg_dll()
    return replace(
        base,
        extra_sections=(ExtraSection(".text2", _LOADER),),
        entry_in_extra=True,
        imports=(
            ("KERNEL32.dll", ("GetProcAddress", "LoadLibraryW", "VirtualAlloc", "VirtualProtect")),
        ),
    )


def libegl_dll() -> PESpec:
    return PESpec(
        dll=True,
        name="libEGL.dll",
        exports=("eglGetDisplay", "eglInitialize", "eglTerminate"),
        imports=(("KERNEL32.dll", ("GetProcAddress",)),),
        text_extra=_FILLER[:1500],
        version_strings=(
            ("FileDescription", "ANGLE libEGL Dynamic Link Library"),
            ("ProductName", "ANGLE"),
        ),
    )


def d3dcompiler_dll() -> PESpec:
    return PESpec(
        dll=True,
        name="d3dcompiler_47.dll",
        exports=("D3DCompile", "D3DCreateBlob", "D3DReflect"),
        imports=(("KERNEL32.dll", ("GetProcAddress",)), ("msvcrt.dll", ("memcpy",))),
        text_extra=_FILLER[:4000],
        rdata_extra=_FILLER[:4000],
        version_strings=(
            ("CompanyName", "Microsoft Corporation"),
            ("FileDescription", "Direct3D HLSL Compiler"),
            ("ProductName", "Microsoft\u00ae Windows\u00ae Operating System"),
        ),
    )


def _version_tuple(v: str) -> tuple[int, int, int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in v.split("-")[0].split(".")][:4]
    parts += [0] * (4 - len(parts))
    return (parts[0], parts[1], parts[2], parts[3])

"""Write the fuzz seed corpora (``tests/fuzz/seeds/TARGET/``) with biv's own writers.

Everything here is generated (the demo's PE and Mach-O writers, its test PKI, Python's
zipfile and tarfile, the test asar writer): no third-party binary is committed. Seeds are
small on purpose: the fuzzer mutates them, and the regression test replays them.

    python tests/fuzz/make_seeds.py [OUT_DIR]
"""

from __future__ import annotations

import io
import json
import struct
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]


def _pe() -> dict[str, bytes]:
    from verifier._scenarios import pewriter

    return {
        "ffmpeg.dll": pewriter.build_pe(pewriter.ffmpeg_dll()),
        "libegl.dll": pewriter.build_pe(pewriter.libegl_dll()),
    }


def _macho() -> dict[str, bytes]:
    from verifier._scenarios import macho as mw

    thin = mw.build_thin("arm64", b"\x1f\x20\x03\xd5" * 16, mw.fuse_wire())
    signed = mw.sign(thin, "com.example.seed", identity=mw.TestIdentity())
    return {"adhoc": mw.sign(thin, "com.example.adhoc"), "signed": signed}


def _fat() -> dict[str, bytes]:
    from verifier._scenarios import macho as mw

    a = mw.sign(mw.build_thin("arm64", b"\x1f\x20\x03\xd5" * 8), "a")
    b = mw.sign(mw.build_thin("x86_64", b"\x90" * 32), "b")
    java = _java_class()
    return {"fat2": mw.build_fat([a, b]), "java.class": java}


def _java_class() -> bytes:
    """A minimal valid class file: ``public class A extends java.lang.Object {}``."""

    def utf8(s: str) -> bytes:
        return b"\x01" + struct.pack(">H", len(s)) + s.encode()

    pool = [utf8("A"), b"\x07\x00\x01", utf8("java/lang/Object"), b"\x07\x00\x03"]
    body = struct.pack(">HH", 0, 52) + struct.pack(">H", len(pool) + 1) + b"".join(pool)
    body += struct.pack(">HHHHHHH", 0x21, 2, 4, 0, 0, 0, 0)
    return b"\xca\xfe\xba\xbe" + body


def _elf() -> dict[str, bytes]:
    """A tiny 64-bit little-endian ELF with a section table (.text, .shstrtab)."""
    shstr = b"\0.text\0.shstrtab\0"
    text = b"\x90" * 16 + b"\xc3"
    text_off = 64
    shstr_off = text_off + len(text)
    sh_off = (shstr_off + len(shstr) + 7) & ~7
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    eh += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2)
    body = eh + text + shstr
    body += b"\0" * (sh_off - len(body))
    sh = b"\0" * 64
    sh += struct.pack("<IIQQQQIIQQ", 1, 1, 6, 0, text_off, len(text), 0, 0, 16, 0)
    sh += struct.pack("<IIQQQQIIQQ", 7, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    return {"tiny.so": body + sh}


def _der() -> dict[str, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    from verifier._scenarios import pki

    p = pki.upstream_pki("ec")
    return {
        "root.der": p.root.cert.public_bytes(Encoding.DER),
        "signer.der": p.signer.cert.public_bytes(Encoding.DER),
    }


def _authenticode() -> dict[str, bytes]:
    """The certificate table of the demo's PE, signed by osslsigncode with the demo PKI."""
    import tempfile

    from verifier._scenarios import osslsign, pewriter, pki
    from verifier.binary import pe as pe_mod

    with tempfile.TemporaryDirectory() as d:
        paths = pki.upstream_pki("ec").write(d)
        src, out = Path(d, "in.dll"), Path(d, "out.dll")
        src.write_bytes(pewriter.build_pe(pewriter.libegl_dll()))
        osslsign.sign(src, out, paths.signer_chain, paths.signer_key)
        data = out.read_bytes()
    info = pe_mod.parse_pe(data[: pe_mod.MAX_HEADERS], len(data))
    table = data[info.cert_offset : info.cert_offset + info.cert_size]
    return {"signed-table": table, "signed.dll": data}


def _codesign() -> dict[str, bytes]:
    from verifier.binary import macho as mo

    out = {}
    for name, data in _macho().items():
        h = mo.parse_slice_header(data, len(data))
        cs = h.code_signature
        if cs is not None:
            out[name] = data[cs[0] : cs[0] + cs[1]]
    return out


def _zip() -> dict[str, bytes]:
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app/a.dll", b"MZ" + bytes(range(256)) * 4)
        zf.writestr("app/", b"")
        zf.writestr("b.txt", b"hello " * 40)
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo("Versions/Current")
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "A")
        zf.writestr("Versions/A/lib", b"lib")
    # a member written through a non-seekable stream: bit 3, data descriptor
    stream = io.BytesIO()

    class _NoSeek(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            return stream.write(b)

    with zipfile.ZipFile(_NoSeek(), "w", zipfile.ZIP_DEFLATED) as zf, zf.open("d.txt", "w") as f:
        f.write(b"descriptor " * 20)
    return {
        "deflated.zip": plain.getvalue(),
        "link.zip": stored.getvalue(),
        "dd.zip": stream.getvalue(),
    }


def _tar() -> dict[str, bytes]:
    out = {}
    for mode, name in (("w", "plain.tar"), ("w:gz", "gz.tar.gz")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
            for path, data in (("a/x.so", b"\x7fELF" * 30), ("a/y", b"y" * 70)):
                ti = tarfile.TarInfo(path)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            ln = tarfile.TarInfo("a/link")
            ln.type = tarfile.SYMTYPE
            ln.linkname = "y"
            tf.addfile(ln)
            hl = tarfile.TarInfo("a/hard")
            hl.type = tarfile.LNKTYPE
            hl.linkname = "a/y"
            tf.addfile(hl)
        out[name] = buf.getvalue()
    return out


def _asar() -> dict[str, bytes]:
    from support import asar

    a, _ = asar.build(
        {"main.js": b"js" * 10, "lib/x.node": b"\x7fELF" * 5}, links={"lib/l": "main.js"}
    )
    return {"app.asar": a}


def _refs() -> dict[str, bytes]:
    doc = {
        "schema": "biv.refs/v1",
        "component": {"name": "electron", "version": "30.0.0", "source": "electron:30.0.0"},
        "files": [
            {"path": "ffmpeg.dll", "size": 3, "sha256": "ab" * 32, "format": "pe"},
            {
                "path": "libffmpeg.dylib",
                "size": 9,
                "sha256": "cd" * 32,
                "format": "macho",
                "slices": [{"arch": "arm64", "sha256": "ef" * 32, "normalized_sha256": "ef" * 32}],
            },
        ],
        "links": [{"path": "Versions/Current", "target": "A", "kind": "symlink"}],
    }
    return {"refs.json": json.dumps(doc, indent=1).encode()}


def _policy() -> dict[str, bytes]:
    root = HERE.parent.parent / "policies"
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.yaml"))}


SEEDS = {
    "pe": lambda: {**_pe(), "signed.dll": _authenticode()["signed.dll"]},
    "macho": _macho,
    "macho_fat": _fat,
    "elf": _elf,
    "der": _der,
    "authenticode": lambda: {"signed-table": _authenticode()["signed-table"]},
    "codesign": _codesign,
    "zip": _zip,
    "tar": _tar,
    "asar": _asar,
    "refs": _refs,
    "policy": _policy,
}


def main(out: Path) -> None:
    for target, make in SEEDS.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            (d / name).write_bytes(data)
        print(f"{target}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "seeds")

"""The PE writer makes real PE files: osslsigncode signs and verifies them, pe.py parses them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from support.selfsigned import make_signer, sign, verify_text

from verifier._scenarios import pewriter as w
from verifier.binary import pe
from verifier.model import Blob

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="needs osslsigncode")

SPECS = {
    "electron.exe": w.electron_exe(),
    "vendor.exe": w.vendor_exe(w.electron_exe(), "Acme", fuses="1111rr11"),
    "ffmpeg.dll": w.ffmpeg_dll(),
    "ffmpeg-trojan.dll": w.trojaned_ffmpeg_dll(),
    "libEGL.dll": w.libegl_dll(),
    "d3dcompiler_47.dll": w.d3dcompiler_dll(),
    "x86.exe": w.PESpec(is64=False, tls_callbacks=2),
    "x86.dll": w.PESpec(is64=False, dll=True, name="x86.dll", exports=("f", "g")),
}


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_signer(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_osslsigncode_signs_and_verifies_writer_output(
    name: str, tmp_path: Path, signer: tuple[Path, Path]
) -> None:
    src, dst = tmp_path / name, tmp_path / f"signed-{name}"
    src.write_bytes(w.build_pe(SPECS[name]))
    sign(src, dst, *signer)
    out = verify_text(dst, signer[0])
    current = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", out)
    calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", out)
    assert current and calculated, out
    assert current.group(1) == calculated.group(1), out
    assert "Signature verification: ok" in out, out
    info = pe.read_pe_info(Blob.of_file(dst))
    assert info.cert_size > 0 and info.cert_offset % 8 == 0
    # osslsigncode rewrites the checksum; ours computes the same value over the signed file
    data = dst.read_bytes()
    assert pe.pe_checksum(data, info.checksum_offset) == info.checksum


def test_writer_is_deterministic() -> None:
    assert w.build_pe(w.electron_exe()) == w.build_pe(w.electron_exe())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_writer_output_parses(name: str) -> None:
    spec = SPECS[name]
    data = w.build_pe(spec)
    info = pe.parse_pe(data[: pe.MAX_HEADERS], len(data))
    assert info.is64 == spec.is64
    assert info.arch == ("x64" if spec.is64 else "x86")
    assert info.checksum == pe.pe_checksum(data, info.checksum_offset) != 0
    names = [s.name for s in info.sections]
    assert names[:3] == [".text", ".rdata", ".data"] and names[-2:] == [".rsrc", ".reloc"]
    assert info.last_section_end == len(data)
    last = info.sections[-1]
    size_of_image = int.from_bytes(
        data[info.size_of_image_offset : info.size_of_image_offset + 4], "little"
    )
    assert size_of_image == (last.virtual_address + last.virtual_size + 0xFFF) & ~0xFFF


def test_vendor_variant_moves_reloc_like_rcedit() -> None:
    up = pe.parse_pe(w.build_pe(w.electron_exe()), len(w.build_pe(w.electron_exe())))
    vb = w.build_pe(w.vendor_exe(w.electron_exe(), "Acme"))
    vendor = pe.parse_pe(vb, len(vb))
    up_s, v_s = {s.name: s for s in up.sections}, {s.name: s for s in vendor.sections}
    assert v_s[".rsrc"].raw_size > up_s[".rsrc"].raw_size
    assert v_s[".reloc"].raw_pointer > up_s[".reloc"].raw_pointer
    for n in (".text", ".rdata", ".data"):
        assert v_s[n] == up_s[n]


def test_trojaned_ffmpeg_has_new_code_and_entry_point() -> None:
    clean, bad = w.build_pe(w.ffmpeg_dll()), w.build_pe(w.trojaned_ffmpeg_dll())
    ci, bi = pe.parse_pe(clean, len(clean)), pe.parse_pe(bad, len(bad))
    assert ".text2" in [s.name for s in bi.sections if s.executable]
    assert bi.entry_point != ci.entry_point
    assert bi.find_section(".text2") is not None


@pytest.mark.skipif(shutil.which("7z") is None, reason="needs 7z")
def test_resources_read_back_with_7zip(tmp_path: Path) -> None:
    """7-Zip's PE handler parses the writer's resource tree and VS_VERSIONINFO."""
    import subprocess

    exe = tmp_path / "Acme.exe"
    exe.write_bytes(w.build_pe(w.vendor_exe(w.electron_exe(), "Acme", "2.3.4")))
    out = tmp_path / "x"
    subprocess.run(["7z", "x", f"-o{out}", str(exe)], check=True, capture_output=True)
    raw = (out / ".rsrc" / "version.txt").read_bytes()
    text = raw.decode("utf-16-le").lstrip("\ufeff")  # 7-Zip writes UTF-16LE
    assert "FILEVERSION    2,3,4,0" in text
    assert '"ProductName",       "Acme"' in text or '"ProductName", "Acme"' in text
    assert len(list((out / ".rsrc" / "ICON").iterdir())) == 4

"""Fuzz targets: one function per parser of untrusted bytes.

Each target takes the raw input and must return normally or raise one of biv's own errors
(``verifier.errors.BivError``); anything else (an ``IndexError`` from a parser, a
``RecursionError``, a write outside the work directory) is a bug. ``make fuzz`` runs each
target under atheris (``tests/fuzz/run.py``); ``tests/fuzz/test_fuzz_regressions.py`` replays
the seed corpora and every regression input under ``make test``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from verifier.errors import BivError

Target = Callable[[bytes], None]
_MAX_INPUT = 1 << 20


class OutsideWrite(AssertionError):
    """An extractor wrote next to its destination instead of inside it."""


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="biv-fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _file(d: Path, data: bytes, name: str = "input") -> str:
    p = d / name
    p.write_bytes(data[:_MAX_INPUT])
    return str(p)


def _analyze(data: bytes, name: str) -> None:
    from verifier.analysis import AnalysisContext, analyze
    from verifier.model import Blob

    with _scratch() as d:
        path = _file(d, data, name)
        analyze(Blob.of_file(path), name, AnalysisContext(verify_signatures=True))


def pe(data: bytes) -> None:
    from verifier.binary import pe as pe_mod

    with contextlib.suppress(BivError):
        pe_mod.parse_pe(data[: pe_mod.MAX_HEADERS], len(data))
    _analyze(data, "x.dll")


def macho(data: bytes) -> None:
    from verifier.binary import macho as m

    with contextlib.suppress(BivError):
        m.parse_slice_header(data, len(data))
    _analyze(data, "x.dylib")


def macho_fat(data: bytes) -> None:
    from verifier.binary import macho as m

    with contextlib.suppress(BivError):
        m.parse_fat(data, len(data))
    _analyze(data, "fat")


def elf(data: bytes) -> None:
    from verifier.binary import elf as e
    from verifier.model import Blob

    with _scratch() as d, contextlib.suppress(BivError):
        e.read_elf_info(Blob.of_file(_file(d, data, "x.so")))
    _analyze(data, "x.so")


def der(data: bytes) -> None:
    from verifier.signing import asn1

    with contextlib.suppress(BivError):
        asn1.check_der(data)


def authenticode(data: bytes) -> None:
    """The certificate table of a PE (WIN_CERTIFICATE entries, PKCS#7, timestamps)."""
    from verifier.signing import authenticode as ac

    table = ac.parse_table(
        data,
        table_offset=4096,
        dir_size=len(data),
        file_size=4096 + len(data),
        last_section_end=4096,
    )
    digests = {a: "00" * n for a, n in (("md5", 16), ("sha1", 20), ("sha256", 32))}
    ac.verify(table, digests, pe_checksum_ok=True, trust=None, at=None)


def codesign(data: bytes) -> None:
    """A Mach-O code signature SuperBlob and its CMS blob."""
    from verifier.signing import codesign as cs
    from verifier.signing.codesign_cms import verify_cms

    try:
        sig = cs.parse_superblob(data)
    except BivError:
        return
    cms = getattr(sig, "cms", None)
    if cms:
        verify_cms(bytes(cms), b"", list(getattr(sig, "code_directories", ()) or ()))


def _extract(reader_name: str, data: bytes) -> None:
    from verifier.unpack import registry
    from verifier.unpack.limits import Limits

    registry.load_builtin()
    reader = registry.get(reader_name)
    assert isinstance(reader, registry.Extractor)
    limits = Limits(max_total_bytes=64 << 20, max_member_bytes=16 << 20, max_members=2000)
    with _scratch() as d:
        src = _file(d, data, "archive")
        dest = d / "out"
        dest.mkdir()
        with contextlib.suppress(BivError):
            reader.extract(src, str(dest), limits)
        if sorted(p.name for p in d.iterdir()) != ["archive", "out"]:
            raise OutsideWrite(sorted(p.name for p in d.iterdir()))


def zip_archive(data: bytes) -> None:
    from verifier.unpack import zipcheck

    with _scratch() as d, contextlib.suppress(BivError):
        zipcheck.scan(_file(d, data, "a.zip"))
    _extract("zip", data)


def tar_archive(data: bytes) -> None:
    _extract("tar", data)


def asar(data: bytes) -> None:
    from verifier.unpack import asar as asar_mod
    from verifier.unpack.limits import Limits

    with _scratch() as d, contextlib.suppress(BivError):
        asar_mod.list_entries(_file(d, data, "app.asar"), Limits())


def refs(data: bytes) -> None:
    """A ``biv.refs/v1`` reference inventory (``path:REFS.json``)."""
    from verifier.upstream.path import resolve_path

    with _scratch() as d:
        path = _file(d, data, "refs.json")
        with contextlib.suppress(BivError):
            resolve_path(f"path:{path}", path, str(d / "work"), None)  # type: ignore[arg-type]


def policy(data: bytes) -> None:
    from verifier.policy.load import load_policy

    with _scratch() as d, contextlib.suppress(BivError):
        load_policy(_file(d, data, "policy.yaml"))


TARGETS: dict[str, Target] = {
    "pe": pe,
    "macho": macho,
    "macho_fat": macho_fat,
    "elf": elf,
    "der": der,
    "authenticode": authenticode,
    "codesign": codesign,
    "zip": zip_archive,
    "tar": tar_archive,
    "asar": asar,
    "refs": refs,
    "policy": policy,
}


def run_one(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data``: biv's own errors are fine, anything else is a bug."""
    with contextlib.suppress(BivError):
        TARGETS[name](data)

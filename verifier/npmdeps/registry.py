"""One dependency's published tarball: fetched, proven, cached (docs/contract.md
"npm dependencies").

For ``NAME@VERSION``::

    proof record cached? -- ok --> published inventory cached and intact? --> Obtained(ok)
          | no                          | no --> cached tarball intact? --> read it again
          v
    GET {registry}/NAME/VERSION -- 404 --> GET {registry}/NAME/latest -- 404 --> unknown-name
          |                                      | 200 --> unknown-version (name exists)
          v
    dist.integrity (sha512) [+ the public registry's, when another registry is configured]
          --> download dist.tarball --> sha512 (and dist.shasum) match? -- no --> mismatch
          --> read the tarball (tarball.read_tarball) --> cache tarball, inventory, proof

The same HTTP client as every other source (timeouts, bounded retries, offline mode),
``npm_config_registry`` overrides the registry (``registries``). A registry that fails at the
connection level several times is not asked again in the same run (the rest are
unavailable at once, not after every retry). Answers that a name or version does not exist
are cached for a day (``NEGATIVE_TTL``), and offline for as long as they are there.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from verifier import __version__, inventory
from verifier.analysis import AnalysisContext
from verifier.errors import MalformedInputError, ReferenceUnavailableError, SchemaError
from verifier.jsonread import Fields
from verifier.model import Anomaly
from verifier.npmdeps.tarball import Published, TarDigests, read_tarball
from verifier.record import record
from verifier.upstream import npm
from verifier.upstream.cache import Cache, is_sha256
from verifier.upstream.http import HttpClient
from verifier.upstream.options import DEFAULT_NPM_REGISTRY, FetchOptions

NEGATIVE_TTL = 24 * 3600
NPM_ANALYSIS_VERSION = "2"
PUBLIC_REGISTRY_ENV = "BIV_NPM_PUBLIC_REGISTRY"
_BREAKER_FAILURES = 3
_PUBLIC_TIMEOUT = 10.0


@record
class Registries:
    primary: str
    public: str | None  # asked too (None: not asked, or the primary is the public one)


def _norm(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def registries(opts: FetchOptions) -> Registries:
    """The registry to fetch from (``npm_config_registry`` overrides the default) and the
    public registry to ask too when it is another one (``BIV_NPM_PUBLIC_REGISTRY``; empty:
    do not ask)."""
    env: Mapping[str, str] = opts.env if opts.env is not None else os.environ
    primary = opts.npm_registry
    if _norm(primary) == _norm(DEFAULT_NPM_REGISTRY):
        for var in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
            if env.get(var):
                primary = env[var]
                break
    public: str | None = env.get(PUBLIC_REGISTRY_ENV, DEFAULT_NPM_REGISTRY) or None
    if public is not None and _norm(public) == _norm(primary):
        public = None
    return Registries(_norm(primary), _norm(public) if public else None)


@record
class Obtained:
    """What the registry says about one NAME@VERSION, and its published files when proven."""

    name: str
    version: str
    # ok | unknown-name | unknown-version | mismatch | unavailable
    status: str
    published: Published | None = None
    digests: TarDigests | None = None
    integrity: str | None = None  # the registry's dist.integrity
    tarball_url: str | None = None
    proof: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # independent sources that vouched for the tarball
    problems: tuple[Anomaly, ...] = ()  # reference-mismatch
    reason: str = ""  # for unavailable / unknown-*: one line


@record
class _Claim:
    """What a version document promises about the tarball, before it is downloaded."""

    integrity: str  # dist.integrity as published
    sha512: str  # hex, from dist.integrity
    tarball: str  # dist.tarball (an http(s) URL)
    shasum: str | None  # dist.shasum (sha1 hex), when given
    proof: tuple[str, ...]
    sources: tuple[str, ...]


class _Breaker:
    """Stops asking a registry that keeps failing at the connection level."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures = 0
        self.open_reason: str | None = None

    def check(self) -> str | None:
        with self.lock:
            return self.open_reason

    def failed(self, reason: str) -> None:
        with self.lock:
            self.failures += 1
            if self.failures >= _BREAKER_FAILURES and self.open_reason is None:
                self.open_reason = f"not asked again after {self.failures} failures: {reason}"

    def ok(self) -> None:
        with self.lock:
            self.failures = 0


def _connection_level(exc: ReferenceUnavailableError) -> bool:
    m = exc.message
    return "connection" in m or "timed out" in m or m.startswith("HTTP 5")


class Fetcher:
    """Obtains dependencies concurrently: one HTTP client per thread, one shared cache."""

    def __init__(self, opts: FetchOptions, workdir: str, ctx: AnalysisContext | None) -> None:
        self.opts = opts
        self.reg = registries(opts)
        self.cache = Cache(opts.resolved_cache_dir())
        self.workdir = workdir
        self.ctx = ctx
        self.version_key = f"{__version__}+{inventory.ANALYSIS_VERSION}+npm{NPM_ANALYSIS_VERSION}"
        self._local = threading.local()
        self._clients: list[HttpClient] = []
        self._lock = threading.Lock()
        self._primary = _Breaker()
        self._public_down: str | None = None
        self.requests = 0

    # --- clients --------------------------------------------------------------------------

    def _http(self, public: bool = False) -> HttpClient:
        attr = "public" if public else "primary"
        client: HttpClient | None = getattr(self._local, attr, None)
        if client is None:
            opts = self.opts
            if public:
                opts = replace(opts, retries=0, timeout=min(opts.timeout, _PUBLIC_TIMEOUT))
            client = HttpClient(replace(opts, progress=False))
            setattr(self._local, attr, client)
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            for c in self._clients:
                self.requests += c.requests_made
                c.close()
            self._clients.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- entry point ------------------------------------------------------------------------

    def key(self, name: str, version: str) -> str:
        return f"deps:npm:{self.reg.primary}:{name}@{version}"

    def cached(self, name: str, version: str) -> Obtained | None:
        """The cached answer for NAME@VERSION, without any network request (None: a miss)."""
        key = self.key(name, version)
        with self.cache.lock(key):
            return self._from_cache(key, name, version)

    def obtain(self, name: str, version: str) -> Obtained:
        key = self.key(name, version)
        with self.cache.lock(key):
            warm = self._from_cache(key, name, version)
            if warm is not None:
                return warm
            if self.opts.offline:
                return Obtained(
                    name,
                    version,
                    "unavailable",
                    reason=f"offline mode and not in the cache ({self.cache.root})",
                )
            down = self._primary.check()
            if down is not None:
                return Obtained(name, version, "unavailable", reason=f"{self.reg.primary}: {down}")
            try:
                got = self._fetch(key, name, version)
            except ReferenceUnavailableError as exc:
                if _connection_level(exc):
                    self._primary.failed(exc.diagnostics())
                return Obtained(name, version, "unavailable", reason=exc.diagnostics())
            self._primary.ok()
            return got

    # --- cache ------------------------------------------------------------------------------

    def _from_cache(self, key: str, name: str, version: str) -> Obtained | None:
        rec = self.cache.get_proof(key)
        if rec is None:
            return None
        status = rec.get("status")
        if status in ("unknown-name", "unknown-version"):
            checked = rec.get("checked_at")
            fresh = isinstance(checked, int | float) and time.time() - checked < NEGATIVE_TTL
            if self.opts.offline or fresh:
                return Obtained(name, version, str(status), reason=str(rec.get("reason", "")))
            return None
        try:
            f = Fields(rec)
            sha = f.text("tarball_sha256")
            digests = TarDigests.from_dict(rec.get("digests"), "digests")
            proof = f.str_list("proof")
            sources = f.str_list("sources")
            integrity = f.text("integrity")
            url = f.text("tarball_url")
        except SchemaError:
            self.cache.drop_proof(key)
            return None
        if status != "ok" or not is_sha256(sha) or digests.sha256 != sha:
            self.cache.drop_proof(key)
            return None
        label = _label(url, name, version)
        doc = self.cache.get_ref(sha, self.version_key, rec.get("ref_sha256"))
        pub: Published | None = None
        if isinstance(doc, dict):
            try:
                pub = Published.from_doc(doc, label)
            except MalformedInputError:
                pub = None
        note = f"published inventory from the cache ({self.cache.root})"
        if pub is None:
            path = self.cache.get_blob(sha)  # re-hashed: a corrupted or swapped tarball misses
            if path is None:
                self.cache.drop_proof(key)
                return None
            try:
                pub, again = read_tarball(path, label, self._tmp(), self.ctx)
            except MalformedInputError:
                self.cache.drop_proof(key)
                return None
            if again != digests:
                self.cache.drop_proof(key)
                return None
            ref_sha = self.cache.put_ref(sha, self.version_key, pub.to_doc())
            self.cache.put_proof(key, {**rec, "ref_sha256": ref_sha})
            note = f"tarball from the cache ({self.cache.root}), sha256 re-verified"
        return Obtained(name, version, "ok", pub, digests, integrity, url, (*proof, note), sources)

    def _tmp(self) -> str:
        d = os.path.join(self.workdir, "npm-members")
        os.makedirs(d, exist_ok=True)
        return d

    # --- network ----------------------------------------------------------------------------

    def _doc(self, http: HttpClient, url: str) -> dict[str, Any] | None:
        raw = http.get_bytes_or_none(url, what="npm version document")
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise ReferenceUnavailableError(
                "npm registry answered with invalid JSON", where=url
            ) from None
        if not isinstance(doc, dict):
            raise ReferenceUnavailableError("npm registry answered with no JSON object", where=url)
        return doc

    def _fetch(self, key: str, name: str, version: str) -> Obtained:
        http = self._http()
        where = npm.version_doc_url(self.reg.primary, name, version)
        doc = self._doc(http, where)
        if doc is None:
            return self._unknown(http, key, name, version)
        claim = self._claim(doc, name, version, where)
        if isinstance(claim, Obtained):
            return claim
        return self._download(http, key, name, version, claim)

    def _unknown(self, http: HttpClient, key: str, name: str, version: str) -> Obtained:
        """No such version: does the name exist at all? (cached as a negative answer)"""
        latest = f"{self.reg.primary}{quote(name, safe='@')}/latest"
        exists = self._doc(http, latest) is not None
        status = "unknown-version" if exists else "unknown-name"
        reason = (
            f"{self.reg.primary} has {name} but not version {version}"
            if exists
            else f"{self.reg.primary} has no package named {name}"
        )
        self.cache.put_proof(
            key, {"status": status, "reason": reason, "checked_at": int(time.time())}
        )
        return Obtained(name, version, status, reason=reason)

    def _claim(
        self, doc: Mapping[str, Any], name: str, version: str, where: str
    ) -> _Claim | Obtained:
        """What the version document promises (and the public registry confirms), or the
        ``mismatch`` that stops here."""
        bad = _check_doc(doc, name, version, where)
        if bad is not None:
            return Obtained(name, version, "mismatch", problems=(bad,), reason=bad.message)
        dist = doc["dist"]
        integrity = dist.get("integrity")
        sha512 = npm.sri_sha512(integrity)
        tarball = dist.get("tarball")
        if sha512 is None or not isinstance(integrity, str):
            a = _mismatch(
                f"{name}@{version}: the registry gives no sha512 dist.integrity (a sha1 "
                "shasum alone is not proof)",
                url=where,
            )
            return Obtained(name, version, "mismatch", problems=(a,), reason=a.message)
        if not isinstance(tarball, str) or not tarball.startswith(("https://", "http://")):
            raise ReferenceUnavailableError("npm version document has no tarball URL", where=where)
        proof = [f"sha512 {sha512[:16]}... from dist.integrity at {where}"]
        sources = [f"registry {self.reg.primary}"]
        public = self._public(name, version, sha512, where)
        if isinstance(public, Anomaly):
            return Obtained(
                name,
                version,
                "mismatch",
                integrity=integrity,
                problems=(public,),
                reason=public.message,
            )
        if public:
            proof.append(public[0])
            sources.extend(public[1:])
        shasum = dist.get("shasum")
        return _Claim(
            integrity,
            sha512,
            tarball,
            shasum if isinstance(shasum, str) else None,
            tuple(proof),
            tuple(sources),
        )

    def _download(
        self, http: HttpClient, key: str, name: str, version: str, claim: _Claim
    ) -> Obtained:
        """Download the tarball, check it against the claim, read it, cache it."""
        tarball = claim.tarball
        got = http.download(tarball, self.cache.tmp_dir(), label=f"{name}-{version}.tgz")
        problems: list[Anomaly] = []
        if got.sha512 != claim.sha512:
            problems.append(
                _mismatch(
                    f"{tarball}: downloaded sha512 does not match dist.integrity of "
                    f"{name}@{version}",
                    url=tarball,
                    expected_sha512=claim.sha512,
                    actual_sha512=got.sha512,
                    actual_sha256=got.sha256,
                )
            )
        label = _label(tarball, name, version)
        try:
            pub, digests = (
                (None, None) if problems else read_tarball(got.path, label, self._tmp(), self.ctx)
            )
        except MalformedInputError as exc:
            _unlink(got.path)
            raise ReferenceUnavailableError(
                f"proven tarball cannot be read: {exc.message}", where=tarball
            ) from None
        shasum = claim.shasum
        if digests is not None and shasum is not None and shasum.lower() != digests.sha1:
            problems.append(
                _mismatch(
                    f"{tarball}: sha1 {digests.sha1} does not match dist.shasum {shasum}",
                    url=tarball,
                    expected_sha1=shasum,
                    actual_sha1=digests.sha1,
                )
            )
        if problems or pub is None or digests is None:
            _unlink(got.path)
            return Obtained(
                name,
                version,
                "mismatch",
                integrity=claim.integrity,
                tarball_url=tarball,
                problems=tuple(problems),
                reason=problems[0].message if problems else "",
            )
        self.cache.put_blob_file(got.path, got.sha256)
        proof = (*claim.proof, f"downloaded from {tarball}, sha512 verified")
        ref_sha = self.cache.put_ref(got.sha256, self.version_key, pub.to_doc())
        self.cache.put_proof(
            key,
            {
                "status": "ok",
                "tarball_sha256": got.sha256,
                "digests": digests.to_dict(),
                "integrity": claim.integrity,
                "tarball_url": tarball,
                "proof": list(proof),
                "sources": list(claim.sources),
                "ref_sha256": ref_sha,
            },
        )
        return Obtained(
            name, version, "ok", pub, digests, claim.integrity, tarball, proof, claim.sources
        )

    def _public(
        self, name: str, version: str, sha512: str, where: str
    ) -> tuple[str, ...] | Anomaly:
        """The public registry's word on the same version, when another registry is used.

        () when not asked; (proof line, source...) otherwise; an Anomaly when they disagree.
        """
        pub = self.reg.public
        if pub is None:
            return ()
        if self._public_down is not None:
            return (
                f"the public registry {pub} is unreachable ({self._public_down}): "
                f"proven by {self.reg.primary} only",
            )
        url = npm.version_doc_url(pub, name, version)
        try:
            doc = self._doc(self._http(public=True), url)
        except ReferenceUnavailableError as exc:
            if _connection_level(exc):
                self._public_down = exc.message
            return (
                f"the public registry could not be asked ({exc.diagnostics()}): "
                f"proven by {self.reg.primary} only",
            )
        if doc is None:
            return (
                f"{name}@{version} is not on the public registry {pub}: proven by "
                f"{self.reg.primary} only",
            )
        dist = doc.get("dist")
        theirs = npm.sri_sha512(dist.get("integrity")) if isinstance(dist, dict) else None
        if theirs is None:
            return (
                f"the public registry {pub} gives no sha512 for {name}@{version}: proven "
                f"by {self.reg.primary} only",
            )
        if theirs != sha512:
            return _mismatch(
                f"{name}@{version}: the configured registry ({where}) and the public registry "
                f"({url}) publish different dist.integrity",
                url=where,
                public_url=url,
                expected_sha512=theirs,
                actual_sha512=sha512,
            )
        return (f"the public registry {url} lists the same sha512", f"public registry {pub}")


def _check_doc(doc: Mapping[str, Any], name: str, version: str, where: str) -> Anomaly | None:
    if not isinstance(doc.get("dist"), dict):
        return _mismatch(f"{name}@{version}: the version document has no 'dist'", url=where)
    if doc.get("version") not in (None, version) or doc.get("name") not in (None, name):
        return _mismatch(
            f"the registry answered with {doc.get('name')!r}@{doc.get('version')!r} when asked "
            f"for {name}@{version}",
            url=where,
        )
    return None


def _mismatch(message: str, **evidence: Any) -> Anomaly:
    return Anomaly("reference-mismatch", message, dict(evidence))


def _label(url: str, name: str, version: str) -> str:
    base = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return base if base and "/" not in base else f"{name.rsplit('/', 1)[-1]}-{version}.tgz"


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

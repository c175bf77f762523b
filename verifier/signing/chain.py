"""The chain engine: one path builder for every signature kind biv verifies.

Authenticode signers and nested signatures, their timestamps (legacy countersignatures and
RFC 3161 tokens), Mach-O CMS signatures and MSI signatures all call ``build_chain(leaf,
pool, roots, purpose, at)``. It searches leaf -> issuers -> a trust anchor, depth first:

* an issuer is found by name (as encoded, then canonically) and, where both certificates
  carry them, by key identifier (authority key id of the child = subject key id of the
  parent); anchors are tried before certificates the signature brought along;
* the issuer's signature over the child's ``tbs`` bytes is checked with the issuer's key for
  every algorithm of real code signing (``signing.algorithms``: RSA PKCS#1 v1.5 with SHA-1
  and SHA-2, RSA-PSS, ECDSA, DSA; MD5 and MD2 recognised, never trusted);
* every issuer must be a CA (basicConstraints cA, or, without the extension, a keyUsage that
  allows certificate signing, as OpenSSL accepts), allow keyCertSign when it has keyUsage,
  respect pathLenConstraint, and allow the purpose when it has an EKU extension (no
  extension: any purpose); the leaf must allow the purpose and digital signatures;
* every certificate, the anchor included, must be valid at the judging time;
* the anchor must be enabled for the purpose at that time (``trust.Anchor.permits``: the
  STL's purposes for Microsoft's roots).

Hostile input cannot make it explode: the pool is capped, each step's candidates are capped,
the whole search has a budget of candidate checks, and the depth is bounded. Signature checks
are memoised per process (the same intermediates sign thousands of files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from verifier.model import JSON, ChainFacts
from verifier.record import record
from verifier.signing import algorithms
from verifier.signing.certs import (
    ANY_EKU,
    KU_DIGITAL_SIGNATURE,
    KU_KEY_CERT_SIGN,
    KU_NON_REPUDIATION,
    Cert,
    aware,
    iso,
)
from verifier.signing.trust import Anchor, RootStore, now_utc

MAX_CHAIN_DEPTH = 8  # certificates in a path, the anchor included
MAX_POOL = 256  # certificates a signature brings that are considered at all
MAX_CANDIDATES_PER_STEP = 16  # issuers with the right name tried for one certificate
MAX_CANDIDATES = 64  # candidate issuers examined in one search, whatever the input offers


@record
class ChainResult:
    trusted: bool
    reason: str
    chain: tuple[Cert, ...] = ()  # leaf first; the anchor last when one was reached
    anchor_source: str | None = None
    at: dt.datetime | None = None
    eku: str = ""
    attempts: tuple[str, ...] = field(default=())

    def facts(self) -> ChainFacts:
        return ChainFacts(
            trusted=self.trusted,
            reason=self.reason,
            eku=self.eku,
            at=iso(self.at),
            anchor_source=self.anchor_source,
            chain=tuple(c.summary() for c in self.chain),
        )

    def to_dict(self) -> JSON:
        return self.facts().to_dict()


# --- signature checks (memoised) -----------------------------------------------------------

_SIG_CACHE: OrderedDict[tuple[bytes, bytes], str | None] = OrderedDict()
_SIG_CACHE_MAX = 4096
_SIG_LOCK = threading.Lock()


def signature_problem(child: Cert, issuer: Cert) -> str | None:
    """Why ``issuer``'s key did not sign ``child`` (None when it did)."""
    key = (child.sha1, hashlib.sha1(issuer.spki_der).digest())
    with _SIG_LOCK:
        if key in _SIG_CACHE:
            _SIG_CACHE.move_to_end(key)
            return _SIG_CACHE[key]
    problem = algorithms.verify(issuer.public_key, child.sig_alg, child.signature, child.tbs)
    with _SIG_LOCK:
        _SIG_CACHE[key] = problem
        if len(_SIG_CACHE) > _SIG_CACHE_MAX:
            _SIG_CACHE.popitem(last=False)
    return problem


def issued_by(child: Cert, parent: Cert) -> bool:
    """True when ``parent``'s name and key issued ``child`` (signature checked)."""
    names = child.issuer_der == parent.subject_der or child.issuer_key == parent.subject_key
    return names and signature_problem(child, parent) is None


def eku_allows(cert: Cert, purpose: str) -> bool:
    e = cert.ekus()
    return e is None or purpose in e or ANY_EKU in e


def _leaf_problem(leaf: Cert, purpose: str) -> str | None:
    if not eku_allows(leaf, purpose):
        return f"leaf certificate lacks EKU {purpose}"
    ku = leaf.key_usage
    if ku is not None and not ku & {KU_DIGITAL_SIGNATURE, KU_NON_REPUDIATION}:
        return "leaf key usage allows neither digitalSignature nor nonRepudiation"
    return None


def _issuer_problem(
    cand: Cert, below: tuple[Cert, ...], purpose: str, when: dt.datetime, anchor: bool
) -> str | None:
    """What stops ``cand`` from issuing the last certificate of ``below``."""
    if not cand.valid_at(when):
        return (
            f"{cand.subject} is not valid at {iso(when)} "
            f"({iso(cand.not_before)} .. {iso(cand.not_after)})"
        )
    bc = cand.basic_constraints
    ku = cand.key_usage
    if bc is not None and not bc[0]:
        return f"{cand.subject} is not a CA (basicConstraints)"
    if bc is None and not anchor and (ku is None or KU_KEY_CERT_SIGN not in ku):
        return f"{cand.subject} is not a CA (no basicConstraints)"
    if ku is not None and KU_KEY_CERT_SIGN not in ku:
        return f"{cand.subject} may not sign certificates (keyUsage lacks keyCertSign)"
    plen = cand.path_len
    if plen is not None:
        intermediates = sum(1 for c in below[1:] if not c.self_issued)
        if intermediates > plen:
            return (
                f"{cand.subject} allows {plen} intermediate certificate(s) below it "
                f"(pathLenConstraint), the chain has {intermediates}"
            )
    if not eku_allows(cand, purpose):
        return f"{cand.subject} does not allow EKU {purpose}"
    return None


class _Pool:
    """The certificates a signature brought, indexed by subject (capped, de-duplicated)."""

    def __init__(self, certs: Sequence[Cert]) -> None:
        self.by_subject: dict[bytes, list[Cert]] = {}
        self.by_canonical: dict[bytes, list[Cert]] | None = None
        seen: set[bytes] = set()
        self.certs: list[Cert] = []
        for c in certs:
            if len(self.certs) >= MAX_POOL:
                break
            if c.der in seen:
                continue
            seen.add(c.der)
            self.certs.append(c)
            self.by_subject.setdefault(c.subject_der, []).append(c)

    def issuers_of(self, cert: Cert, *, canonical: bool = False) -> list[Cert]:
        if not canonical:
            return self.by_subject.get(cert.issuer_der, [])
        if self.by_canonical is None:
            self.by_canonical = {}
            for c in self.certs:
                self.by_canonical.setdefault(c.subject_key, []).append(c)
        return self.by_canonical.get(cert.issuer_key, [])


def _candidates(
    cur: Cert, roots: RootStore, pool: _Pool, *, canonical: bool
) -> list[tuple[Cert, Anchor | None]]:
    """Issuers named like ``cur``'s issuer: anchors first, then the signature's certificates."""
    cands: list[tuple[Cert, Anchor | None]] = [
        (a.cert, a) for a in roots.issuers_of(cur, canonical=canonical)
    ]
    tried = {c.der for c, _ in cands}
    for c in pool.issuers_of(cur, canonical=canonical):
        if c.der not in tried:
            cands.append((c, roots.anchor_for(c)))
    return cands


def _key_id_mismatch(child: Cert, parent: Cert) -> bool:
    aki = child.authority_key_id
    ski = parent.subject_key_id
    return aki is not None and ski is not None and aki != ski


@dataclass
class _Search:
    """One depth-first search for a path from ``leaf`` to an anchor, budgeted."""

    leaf: Cert
    roots: RootStore
    pool: _Pool
    eku: str
    when: dt.datetime
    failures: list[tuple[int, int, str]] = field(default_factory=list)  # weight, depth, why
    best: tuple[Cert, ...] = ()  # the longest path tried
    budget: int = MAX_CANDIDATES

    def fail(self, weight: int, msg: str, path: tuple[Cert, ...]) -> None:
        self.failures.append((weight, len(path), msg))
        if len(path) >= len(self.best):
            self.best = path

    def candidates(self, cur: Cert) -> list[tuple[Cert, Anchor | None]]:
        cands = _candidates(cur, self.roots, self.pool, canonical=False)
        if not cands:  # names encoded differently: compare them canonically
            cands = _candidates(cur, self.roots, self.pool, canonical=True)
        cands = [(c, a) for c, a in cands if not _key_id_mismatch(cur, c)]
        cands.sort(key=lambda ca: (ca[1] is None, not ca[0].valid_at(self.when)))
        return cands

    def walk(self, path: tuple[Cert, ...]) -> ChainResult | None:
        cur = path[-1]
        anchor = self.roots.anchor_for(cur)
        if anchor is not None:
            ok, why = anchor.permits(self.eku, self.when, self.leaf)
            if ok:
                return ChainResult(
                    True, "chain reaches a trusted root", path, anchor.source, self.when, self.eku
                )
            self.fail(4, why, path)
        if len(path) >= MAX_CHAIN_DEPTH:
            self.fail(1, f"chain longer than {MAX_CHAIN_DEPTH} certificates", path)
            return None
        cands = self.candidates(cur)
        found_issuer = False
        for cand, cand_anchor in cands[:MAX_CANDIDATES_PER_STEP]:
            if any(cand.der == p.der for p in path):
                continue
            self.budget -= 1
            if self.budget < 0:
                self.fail(1, "too many candidate issuers; search abandoned", path)
                return None
            bad_sig = signature_problem(cur, cand)
            if bad_sig is not None:
                self.fail(1, f"{cur.subject}: not signed by {cand.subject}: {bad_sig}", path)
                continue
            found_issuer = True
            why_not = _issuer_problem(cand, path, self.eku, self.when, cand_anchor is not None)
            if why_not is not None:
                self.fail(3, why_not, (*path, cand))
                continue
            r = self.walk((*path, cand))
            if r is not None:
                return r
        self.dead_end(cur, path, len(cands), found_issuer)
        return None

    def dead_end(self, cur: Cert, path: tuple[Cert, ...], n_cands: int, found_issuer: bool) -> None:
        if n_cands > MAX_CANDIDATES_PER_STEP:
            self.fail(
                1, f"more than {MAX_CANDIDATES_PER_STEP} candidate issuers for {cur.subject}", path
            )
        if not found_issuer:
            if cur.self_issued and signature_problem(cur, cur) is None:
                self.fail(2, f"self-signed {cur.subject} is not a trusted root", path)
            else:
                self.fail(0, f"no trusted issuer found for {cur.subject}", path)

    def verdict(self) -> ChainResult:
        """No path: the most telling reason (the heaviest failure, the deepest first)."""
        ordered = sorted(self.failures, key=lambda f: (-f[0], -f[1]))
        reason = ordered[0][2] if ordered else "no chain"
        attempts = tuple(f[2] for f in self.failures[:16])
        return ChainResult(False, reason, self.best, None, self.when, self.eku, attempts)


def build_chain(
    leaf: Cert,
    intermediates: Sequence[Cert],
    roots: RootStore,
    eku: str,
    at: dt.datetime | None = None,
) -> ChainResult:
    """Find a path leaf -> intermediates -> a root of ``roots`` valid for ``eku`` at ``at``
    (now when None). Returns the path found, or the most telling reason there is none."""
    when = aware(at) if at is not None else now_utc()
    problem = _leaf_problem(leaf, eku)
    if problem is not None:
        return ChainResult(False, problem, (leaf,), None, when, eku)
    if not leaf.valid_at(when):
        msg = (
            f"{leaf.subject} is not valid at {iso(when)} "
            f"({iso(leaf.not_before)} .. {iso(leaf.not_after)})"
        )
        return ChainResult(False, msg, (leaf,), None, when, eku)
    search = _Search(leaf, roots, _Pool(intermediates), eku, when, best=(leaf,))
    return search.walk((leaf,)) or search.verdict()

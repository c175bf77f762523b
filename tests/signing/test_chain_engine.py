"""The chain engine (``signing.chain``) on a test PKI built for each rule it enforces.

Every case builds a small hierarchy with ``support.certgen`` (any extension set, validity and
issuer signature hash) and asks ``build_chain`` for a code-signing or time-stamping path at a
given time. Hostile inputs (thousands of look-alike issuers, over-long chains) must end fast.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from support import certgen as G

from verifier.signing import algorithms, asn1, chain
from verifier.signing import trust as T
from verifier.signing.certs import CODE_SIGNING, TIME_STAMPING, Cert

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def root() -> G.Made:
    return G.make("Chain Test Root")


@pytest.fixture(scope="module")
def inter(root: G.Made) -> G.Made:
    return G.make("Chain Test Intermediate", root)


@pytest.fixture(scope="module")
def leaf(inter: G.Made) -> G.Made:
    return G.make("Chain Test Signer", inter, ca=False, eku=(G.CODE,))


def roots_of(*made: G.Made, **kw: object) -> T.RootStore:
    return T.RootStore(T.Anchor(m.cert, "test", **kw) for m in made)  # type: ignore[arg-type]


def build(
    leaf: G.Made, pool: list[G.Made], root: G.Made, at: dt.datetime = NOW, eku: str = CODE_SIGNING
) -> chain.ChainResult:
    return chain.build_chain(leaf.cert, [m.cert for m in pool], roots_of(root), eku, at)


def test_sha256_chain(root: G.Made, inter: G.Made, leaf: G.Made) -> None:
    r = build(leaf, [inter], root)
    assert r.trusted, r.reason
    assert [c.subject for c in r.chain] == [
        "CN=Chain Test Signer",
        "CN=Chain Test Intermediate",
        "CN=Chain Test Root",
    ]


def test_sha1_rsa_issuer_signature_is_accepted(root: G.Made) -> None:
    """cryptography's verify_directly_issued_by refuses this; most TSAs used it until 2020."""
    i1 = G.make("SHA1 PCA", root, sig_hash="sha1")
    l1 = G.make("SHA1 Time-Stamp Service", i1, ca=False, eku=(G.TSA,), sig_hash="sha1")
    assert l1.cert.sig_alg.oid == "1.2.840.113549.1.1.5"
    with pytest.raises(Exception):  # noqa: B017 - the library's refusal, whatever its type
        from cryptography import x509

        x509.load_der_x509_certificate(l1.der).verify_directly_issued_by(
            x509.load_der_x509_certificate(i1.der)
        )
    r = build(l1, [i1], root, eku=TIME_STAMPING)
    assert r.trusted, r.reason


def test_md5_issuer_signature_is_never_trusted(root: G.Made) -> None:
    i1 = G.make("MD5 PCA", root, sig_hash="md5")
    l1 = G.make("MD5 Signer", i1, ca=False, eku=(G.CODE,))
    r = build(l1, [i1], root)
    assert not r.trusted
    assert any("MD5" in a and "never trusted" in a for a in r.attempts), r.attempts
    # recognised, not "unsupported": the algorithm table knows it
    assert algorithms.SIGNATURE_OIDS[i1.cert.sig_alg.oid] == ("rsa", "md5")


def test_wrong_issuer_signature(root: G.Made, inter: G.Made) -> None:
    """Same name as the intermediate, another key: the leaf's signature does not verify."""
    impostor = G.make("Chain Test Intermediate", root, key_label="impostor-intermediate")
    l1 = G.make("Signed By Impostor", impostor, ca=False, eku=(G.CODE,), aki=False)
    r = build(l1, [inter], root)
    assert not r.trusted
    assert any("not signed by" in a for a in r.attempts), r.attempts
    # with an authority key id, the mismatch is seen before any signature is checked
    l2 = G.make("Signed By Impostor With AKI", impostor, ca=False, eku=(G.CODE,))
    assert "no trusted issuer" in build(l2, [inter], root).reason


def test_non_ca_intermediate(root: G.Made) -> None:
    not_ca = G.make("Leaf Posing As CA", root, ca=False)
    l1 = G.make("Under A Non-CA", not_ca, ca=False, eku=(G.CODE,))
    r = build(l1, [not_ca], root)
    assert not r.trusted and "is not a CA" in r.reason
    # without basicConstraints and without keyCertSign it is not a CA either (OpenSSL's rule)
    no_bc = G.make("No Basic Constraints", root, ca=None, key_usage=G.usage(cert_sign=False))
    l2 = G.make("Under No BC", no_bc, ca=False, eku=(G.CODE,))
    r = build(l2, [no_bc], root)
    assert not r.trusted and "is not a CA" in r.reason


def test_path_length_exceeded(root: G.Made) -> None:
    top = G.make("PathLen Zero CA", root, path_len=0)
    below = G.make("Sub CA Under PathLen Zero", top)
    l1 = G.make("Two Levels Down", below, ca=False, eku=(G.CODE,))
    r = build(l1, [top, below], root)
    assert not r.trusted and "pathLenConstraint" in r.reason
    # directly under the pathLen-0 CA is fine
    l2 = G.make("One Level Down", top, ca=False, eku=(G.CODE,))
    assert build(l2, [top], root).trusted


def test_missing_key_cert_sign(root: G.Made) -> None:
    no_ku = G.make("CA Without KeyCertSign", root, key_usage=G.usage(cert_sign=False))
    l1 = G.make("Under No KeyCertSign", no_ku, ca=False, eku=(G.CODE,))
    r = build(l1, [no_ku], root)
    assert not r.trusted and "keyCertSign" in r.reason


def test_intermediate_eku_must_allow_the_purpose(root: G.Made) -> None:
    tls_ca = G.make("TLS Only CA", root, eku=(G.SERVER,))
    l1 = G.make("Code Signer Under TLS CA", tls_ca, ca=False, eku=(G.CODE,))
    r = build(l1, [tls_ca], root)
    assert not r.trusted and "does not allow EKU" in r.reason
    # an intermediate that lists code signing, or lists nothing (no extension), is fine
    code_ca = G.make("Code Signing CA", root, eku=(G.CODE,))
    assert build(G.make("Under Code CA", code_ca, ca=False, eku=(G.CODE,)), [code_ca], root).trusted


def test_leaf_eku(root: G.Made, inter: G.Made) -> None:
    tsa = G.make("Only A TSA", inter, ca=False, eku=(G.TSA,))
    assert "EKU" in build(tsa, [inter], root).reason
    assert build(tsa, [inter], root, eku=TIME_STAMPING).trusted


def test_expired_at_judging_time(root: G.Made) -> None:
    old = G.make(
        "Expired PCA",
        root,
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    l1 = G.make("Under Expired PCA", old, ca=False, eku=(G.CODE,))
    r = build(l1, [old], root, at=NOW)
    assert not r.trusted and "not valid at" in r.reason
    assert build(l1, [old], root, at=dt.datetime(2020, 6, 1, tzinfo=dt.UTC)).trusted


def test_signer_expired_now_but_valid_at_the_timestamp(root: G.Made, inter: G.Made) -> None:
    """The rule behind "a timestamped signature is judged at the timestamp's time"."""
    l1 = G.make(
        "Signer Of 2020",
        inter,
        ca=False,
        eku=(G.CODE,),
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    assert not build(l1, [inter], root, at=NOW).trusted
    assert build(l1, [inter], root, at=dt.datetime(2020, 5, 1, tzinfo=dt.UTC)).trusted


def test_expired_root_is_accepted_at_a_time_it_was_valid() -> None:
    old_root = G.make(
        "Root Of 2001",
        not_before=dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 5, 9, tzinfo=dt.UTC),
    )
    pca = G.make(
        "Time-Stamp PCA Of 2007",
        old_root,
        sig_hash="sha1",
        not_before=dt.datetime(2007, 4, 3, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 4, 3, tzinfo=dt.UTC),
    )
    tsa = G.make(
        "Time-Stamp Service Of 2019",
        pca,
        ca=False,
        eku=(G.TSA,),
        sig_hash="sha1",
        not_before=dt.datetime(2018, 10, 24, tzinfo=dt.UTC),
        not_after=dt.datetime(2020, 1, 10, tzinfo=dt.UTC),
    )
    then = dt.datetime(2019, 5, 3, 2, 23, 59, tzinfo=dt.UTC)
    r = build(tsa, [pca], old_root, at=then, eku=TIME_STAMPING)
    assert r.trusted, r.reason
    assert r.chain[-1].subject == "CN=Root Of 2001"
    assert not build(tsa, [pca], old_root, at=NOW, eku=TIME_STAMPING).trusted


def _stl_attrs(ekus: list[str]) -> bytes:
    """An authroot.stl subject's attribute SET: property 9 (enabled EKUs) only."""

    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag]) + asn1.encode_length(len(body)) + body

    seq = tlv(0x30, b"".join(tlv(0x06, asn1.encode_oid(o)) for o in ekus))
    attr = tlv(0x30, tlv(0x06, asn1.encode_oid("1.3.6.1.4.1.311.10.11.9")) + tlv(0x31, tlv(4, seq)))
    return tlv(0x31, attr)


def test_stl_restricted_root_is_refused_for_code_signing(root: G.Made, inter: G.Made) -> None:
    l1 = G.make("Code Signer Under A TLS Root", inter, ca=False, eku=(G.CODE,))
    tls_only = T.RootStore([T.Anchor(root.cert, "stl", stl=_stl_attrs([G.SERVER.dotted_string]))])
    r = chain.build_chain(l1.cert, [inter.cert], tls_only, CODE_SIGNING, NOW)
    assert not r.trusted and "not enabled for 1.3.6.1.5.5.7.3.3" in r.reason
    both = T.RootStore([T.Anchor(root.cert, "stl", stl=_stl_attrs([CODE_SIGNING]))])
    assert chain.build_chain(l1.cert, [inter.cert], both, CODE_SIGNING, NOW).trusted


def test_real_stl_restricted_roots_are_refused() -> None:
    """Microsoft's own STL: a root enabled for TLS only never anchors a code-signing chain."""
    roots = T.microsoft_roots()
    tls_only = [
        a
        for a in roots.anchors
        if a.purposes.ekus is not None and CODE_SIGNING not in a.purposes.ekus
    ]
    assert len(tls_only) > 50
    a = tls_only[0]
    ok, why = a.permits(CODE_SIGNING, NOW, a.cert)
    assert not ok and "not enabled" in why


def test_issuer_found_by_key_identifier(root: G.Made, inter: G.Made, leaf: G.Made) -> None:
    """A same-name certificate with another subject key id is not even tried."""
    twin = G.make("Chain Test Intermediate", root, key_label="twin-intermediate")
    calls: list[int] = []
    real = algorithms.verify

    def counting(*a: object, **kw: object) -> str | None:
        calls.append(1)
        return real(*a, **kw)  # type: ignore[arg-type]

    chain._SIG_CACHE.clear()
    try:
        algorithms.verify = counting  # type: ignore[assignment]
        r = build(leaf, [twin, inter], root)
    finally:
        algorithms.verify = real  # type: ignore[assignment]
    assert r.trusted
    assert len(calls) == 2  # leaf by the real intermediate, intermediate by the root


# --- hostile -------------------------------------------------------------------------------


def _with_serial(der: bytes, serial: int) -> bytes:
    """``der`` with its serial number replaced by one of the same length (signature broken,
    which does not matter for a candidate issuer: only its key is used)."""
    c = Cert.from_der(der)
    old = c.serial_number.to_bytes(16, "big")
    new = serial.to_bytes(16, "big")
    assert der.count(old) == 1
    return der.replace(old, new)


def test_thousands_of_lookalike_issuers_do_not_explode(root: G.Made, inter: G.Made) -> None:
    """3000 certificates named like the issuer (no key id to tell them apart): the search
    examines a bounded number of them and ends, untrusted."""
    impostor = G.make("Chain Test Intermediate", root, key_label="impostor-intermediate")
    l1 = G.make("Leaf Of Many", inter, ca=False, eku=(G.CODE,), aki=False)
    flood = [Cert.from_der(_with_serial(impostor.der, (1 << 120) + i)) for i in range(3000)]
    assert all(c.subject_der == inter.cert.subject_der for c in flood[:5])
    calls: list[int] = []
    real = chain.signature_problem

    def counting(child: Cert, issuer: Cert) -> str | None:
        calls.append(1)
        return real(child, issuer)

    t0 = time.monotonic()
    try:
        chain.signature_problem = counting  # type: ignore[assignment]
        r = chain.build_chain(l1.cert, [*flood, inter.cert], roots_of(root), CODE_SIGNING, NOW)
    finally:
        chain.signature_problem = real  # type: ignore[assignment]
    assert not r.trusted  # the real issuer lies beyond what is looked at: fail safe
    assert len(calls) <= chain.MAX_CANDIDATES + 1
    assert time.monotonic() - t0 < 5
    # the same pool with the real issuer first is trusted
    ok = chain.build_chain(l1.cert, [inter.cert, *flood], roots_of(root), CODE_SIGNING, NOW)
    assert ok.trusted, ok.reason


def test_chain_length_is_capped(root: G.Made) -> None:
    cas = [root]
    for i in range(chain.MAX_CHAIN_DEPTH + 2):
        cas.append(G.make(f"Deep CA {i}", cas[-1]))
    l1 = G.make("Deep Leaf", cas[-1], ca=False, eku=(G.CODE,))
    r = build(l1, cas[1:], root)
    assert not r.trusted
    assert any("chain longer than" in a for a in r.attempts)
    assert len(r.chain) <= chain.MAX_CHAIN_DEPTH

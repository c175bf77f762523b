"""Differential tests: biv's Authenticode verdicts against ``osslsigncode verify``.

Fixtures are real PE files (``verifier._scenarios.pewriter``) signed by osslsigncode with a
throwaway PKI (``verifier._scenarios.pki``), timestamped by a local TSA on 127.0.0.1
(``tests/support/tsa.py``: ``openssl ts`` for RFC 3161, a small server for the legacy protocol)
or by osslsigncode's built-in TSA at a fixed time. biv's valid/invalid must agree with
osslsigncode's *output* on every one; biv must additionally flag the CVE-2013-3900 padding
osslsigncode accepts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.authenticode import check_file, rules
from support.tsa import LocalTSA

from verifier._scenarios import osslsign, pewriter
from verifier._scenarios import pki as P
from verifier.binary import pe
from verifier.model import Blob
from verifier.signing.trust import TrustConfig

pytestmark = pytest.mark.skipif(
    shutil.which("osslsigncode") is None or shutil.which("openssl") is None,
    reason="osslsigncode/openssl not installed",
)


@dataclass(frozen=True)
class Env:
    d: Path
    pki: P.Pki
    paths: P.PkiPaths
    other: P.PkiPaths  # a root nobody trusts
    unsigned: Path
    trust: TrustConfig

    def sign(self, name: str, src: Path | None = None, **kw: object) -> Path:
        out = self.d / name
        cert = kw.pop("cert", self.paths.signer_cert)
        key = kw.pop("key", self.paths.signer_key)
        chain = kw.pop("chain", self.paths.intermediate_cert)
        osslsign.sign(src or self.unsigned, out, cert, key, chain, **kw)  # type: ignore[arg-type]
        return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    d = tmp_path_factory.mktemp("authenticode")
    pki = P.build_pki("biv Authenticode Test CA", signer_cn="biv Test Signer", org="biv tests")
    paths = pki.write(d / "pki")
    other = P.build_pki("Untrusted Test CA", signer_cn="Nobody Trusts Me").write(d / "other")
    unsigned = d / "app.exe"
    unsigned.write_bytes(pewriter.build_pe(pewriter.PESpec(rdata_extra=bytes(range(256)) * 16)))
    return Env(d, pki, paths, other, unsigned, TrustConfig(extra_pem=(paths.root_cert,)))


def both(env: Env, path: Path, at: dt.datetime | None = None) -> tuple[bool, bool, set[str]]:
    """(biv valid, osslsigncode valid, biv anomaly rules)."""
    facts, anomalies, _ = check_file(path, env.trust, at)
    theirs = osslsign.verify(path, env.paths.root_cert, at=at)
    assert facts.signed
    assert facts.valid is not None
    return facts.valid, theirs.valid, rules(anomalies)


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_digest_algorithms_agree(env: Env, digest: str) -> None:
    f = env.sign(f"signed-{digest}.exe", digest=digest)
    ours, theirs, found = both(env, f)
    assert ours is True and theirs is True
    facts, _, table = check_file(f, env.trust)
    assert table.digest_algorithms == {digest}
    assert facts.signers[0].subject.startswith("CN=biv Test Signer")
    sig = facts.details_dict()["signatures"][0]
    assert sig["signed_digest"] == sig["computed_digest"]
    assert ("weak-digest" in found) == (digest == "sha1")
    assert found <= {"weak-digest"}


def test_changed_byte_in_signed_range_is_invalid(env: Env) -> None:
    f = env.sign("tampered.exe")
    data = bytearray(f.read_bytes())
    info = pe.read_pe_info(Blob.of_file(f))
    text = info.sections[0]
    data[text.raw_pointer + 3] ^= 0xFF
    f.write_bytes(bytes(data))
    ours, theirs, found = both(env, f)
    assert ours is False and theirs is False
    assert "invalid-signature" in found


def test_untrusted_root_agrees(env: Env) -> None:
    f = env.sign(
        "untrusted.exe",
        cert=env.other.signer_cert,
        key=env.other.signer_key,
        chain=env.other.intermediate_cert,
    )
    ours, theirs, found = both(env, f)
    assert ours is False and theirs is False
    assert "untrusted-signer" in found and "invalid-signature" not in found
    # trusting that root makes it valid for both
    facts, _, _ = check_file(f, TrustConfig(extra_pem=(env.other.root_cert,)))
    assert facts.valid is True
    assert osslsign.verify(f, env.other.root_cert).valid


def test_microsoft_roots_alone_do_not_trust_a_test_root(env: Env) -> None:
    f = env.sign("ms-only.exe")
    facts, anomalies, _ = check_file(f, TrustConfig())
    assert facts.valid is False
    assert "untrusted-signer" in rules(anomalies)


def test_nested_signature_sha1_plus_sha256(env: Env) -> None:
    first = env.sign("nest-1.exe", digest="sha1")
    nested = env.sign("nest-2.exe", src=first, digest="sha256", nest=True)
    ours, theirs, found = both(env, nested)
    assert ours is True and theirs is True
    facts, _, table = check_file(nested, env.trust)
    assert table.digest_algorithms == {"sha1", "sha256"}
    assert len(facts.nested_signers) == 1
    assert "weak-digest" not in found  # SHA-256 is there too
    # the nested signature is set aside: primary container equals the unnested table
    base, _, _ = check_file(first, env.trust)
    assert facts.container_sha256 != base.container_sha256
    assert facts.primary_container_sha256 == base.container_sha256
    assert base.primary_container_sha256 == base.container_sha256


def test_nested_signature_by_untrusted_signer_is_caught(env: Env) -> None:
    first = env.sign("nest-u1.exe")
    nested = env.sign(
        "nest-u2.exe",
        src=first,
        nest=True,
        cert=env.other.signer_cert,
        key=env.other.signer_key,
        chain=env.other.intermediate_cert,
    )
    ours, _theirs, found = both(env, nested)
    # Windows' rule: the primary signature decides; the nested one is reported on its own,
    # and each signature's verdict agrees with osslsigncode's for that signature
    assert ours is True
    assert "invalid-nested-signature" in found and "untrusted-signer" not in found
    facts, anomalies, table = check_file(nested, env.trust)
    per_sig = [s["valid"] for s in facts.details_dict()["signatures"]]
    theirs_each = [s.verified for s in osslsign.verify(nested, env.paths.root_cert).signatures]
    assert per_sig == theirs_each == [True, False]
    (a,) = [a for a in anomalies if a.rule == "invalid-nested-signature"]
    assert "Nobody Trusts Me" in (a.evidence["signer_actual"] or "")
    # the region is the nested PKCS#7 itself (content decides inheritance)
    assert a.region_sha256 == hashlib.sha256(table.signatures[1].der).hexdigest()
    assert [a.region_sha256] == list(facts.nested_sha256)


def test_rfc3161_timestamp_from_local_openssl_tsa(env: Env) -> None:
    with LocalTSA(env.pki) as tsa:
        f = env.sign("ts-rfc3161.exe", ts_url=tsa.url)
    ours, theirs, _ = both(env, f)
    assert ours is True and theirs is True
    facts, _, _ = check_file(f, env.trust)
    (ts,) = facts.details_dict()["signatures"][0]["timestamps"]
    assert ts["kind"] == "rfc3161" and ts["valid"] is True
    assert facts.details_dict()["signatures"][0]["time_source"] == "timestamp"
    assert "Timestamping Authority" in ts["signer"]["subject"]


def test_legacy_countersignature_from_local_server(env: Env) -> None:
    with LocalTSA(env.pki) as tsa:
        f = env.sign("ts-legacy.exe", legacy_ts_url=tsa.legacy_url)
    ours, theirs, _ = both(env, f)
    assert ours is True and theirs is True
    facts, _, _ = check_file(f, env.trust)
    (ts,) = facts.details_dict()["signatures"][0]["timestamps"]
    assert ts["kind"] == "legacy" and ts["valid"] is True


def test_expired_signer_without_timestamp_is_invalid(env: Env) -> None:
    f = env.sign(
        "expired.exe",
        cert=env.paths.expired_signer_cert,
        key=env.paths.expired_signer_key,
        signing_time=P.EXPIRED_SIGNING_TIME,
    )
    ours, theirs, found = both(env, f)
    assert ours is False and theirs is False
    assert "untrusted-signer" in found
    # as of a time inside its validity (--at), it is valid for both
    at = P.EXPIRED_SIGNING_TIME
    ours_at, theirs_at, _ = both(env, f, at=at)
    assert ours_at is True and theirs_at is True


def test_expired_signer_with_timestamp_is_valid(env: Env) -> None:
    f = env.sign(
        "expired-ts.exe",
        cert=env.paths.expired_signer_cert,
        key=env.paths.expired_signer_key,
        signing_time=P.EXPIRED_SIGNING_TIME,
        tsa_cert=env.paths.tsa_chain,
        tsa_key=env.paths.tsa_key,
        tsa_time=P.EXPIRED_SIGNING_TIME,
    )
    ours, theirs, found = both(env, f)
    assert ours is True and theirs is True
    assert not found
    facts, _, _ = check_file(f, env.trust)
    sig = facts.details_dict()["signatures"][0]
    assert sig["time_source"] == "timestamp"
    assert sig["verified_at"].startswith("2020-06-01")


def test_expired_signer_with_legacy_countersignature_is_valid(env: Env) -> None:
    with LocalTSA(env.pki, legacy_time=P.EXPIRED_SIGNING_TIME) as tsa:
        f = env.sign(
            "expired-legacy.exe",
            cert=env.paths.expired_signer_cert,
            key=env.paths.expired_signer_key,
            signing_time=P.EXPIRED_SIGNING_TIME,
            legacy_ts_url=tsa.legacy_url,
        )
    ours, theirs, _ = both(env, f)
    assert ours is theirs is True


def test_root_expired_since_the_timestamp_is_accepted(env: Env) -> None:
    """A 2015-2022 hierarchy (root included, SHA-1 certificates) timestamped in 2018: judged
    then, as Windows does, it is valid today; without the timestamp it is not."""
    from support import certgen as G

    y = lambda n: dt.datetime(n, 1, 1, tzinfo=dt.UTC)  # noqa: E731
    root = G.make("Root Of 2015", not_before=y(2015), not_after=y(2022), sig_hash="sha1")
    inter = G.make("PCA Of 2015", root, not_before=y(2015), not_after=y(2022), sig_hash="sha1")
    leaf = G.make(
        "Signer Of 2017", inter, ca=False, eku=(G.CODE,), not_before=y(2017), not_after=y(2019)
    )
    tsa = G.make(
        "TSA Of 2015",
        inter,
        ca=False,
        eku=(G.TSA,),
        eku_critical=True,
        not_before=y(2015),
        not_after=y(2022),
        sig_hash="sha1",
    )
    d = env.d / "expired-root"
    d.mkdir()
    files = {
        "root.pem": root.pem,
        "chain.pem": leaf.pem + inter.pem,
        "leaf.key": leaf.key_pem,
        "tsa.pem": tsa.pem + inter.pem,
        "tsa.key": tsa.key_pem,
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    when = dt.datetime(2018, 6, 1, tzinfo=dt.UTC)
    kw: dict[str, object] = {"cert": d / "chain.pem", "key": d / "leaf.key", "chain": None}
    stamped = env.sign("old-root-ts.exe", signing_time=when, **kw, tsa_cert=d / "tsa.pem",
                       tsa_key=d / "tsa.key", tsa_time=when)  # fmt: skip
    bare = env.sign("old-root.exe", signing_time=when, **kw)
    trust = TrustConfig(extra_pem=(str(d / "root.pem"),))
    for f, expect in ((stamped, True), (bare, False)):
        facts, _, _ = check_file(f, trust)
        theirs = osslsign.verify(f, d / "root.pem")
        assert facts.valid is expect and theirs.valid is expect
    facts, _, _ = check_file(stamped, trust)
    sig = facts.details_dict()["signatures"][0]
    assert sig["time_source"] == "timestamp" and sig["verified_at"].startswith("2018-06-01")
    assert sig["chain"][-1]["subject"] == "CN=Root Of 2015"
    (ts,) = sig["timestamps"]
    assert ts["valid"] is True and ts["chain"]["chain"][-1]["subject"] == "CN=Root Of 2015"


def _pad_inside_table(src: Path, dst: Path, payload: bytes) -> tuple[int, int]:
    """3CX-style: grow dwLength and the directory size, append ``payload`` in the table."""
    data = bytearray(src.read_bytes())
    info = pe.read_pe_info(Blob.of_file(src))
    assert info.cert_offset + info.cert_size == len(data)
    payload = payload + bytes(-len(payload) % 8)
    (dw,) = struct.unpack_from("<I", data, info.cert_offset)
    struct.pack_into("<I", data, info.cert_offset, dw + len(payload))
    struct.pack_into("<I", data, info.security_dir_offset + 4, info.cert_size + len(payload))
    start = len(data)
    data += payload
    struct.pack_into("<I", data, info.checksum_offset, 0)
    struct.pack_into(
        "<I", data, info.checksum_offset, pe.pe_checksum(bytes(data), info.checksum_offset)
    )
    dst.write_bytes(bytes(data))
    return start, len(payload)


def test_padding_payload_osslsigncode_accepts_biv_flags(env: Env) -> None:
    f = env.sign("pad-src.exe")
    payload = b"\xfe\xed\xfa\xce" + bytes((i * 167 + 13) % 256 for i in range(4000))
    out = env.d / "padded.exe"
    start, length = _pad_inside_table(f, out, payload)
    ours, theirs, found = both(env, out)
    assert theirs is True  # osslsigncode (like Windows by default) accepts it
    assert ours is True  # the signature itself is intact...
    assert "signature-padding" in found  # ...but biv sees the payload
    _, anomalies, _ = check_file(out, env.trust)
    (pad,) = [a for a in anomalies if a.rule == "signature-padding"]
    assert "EnableCertPaddingCheck" in pad.message
    assert pad.evidence["enable_cert_padding_check"] == "fails"
    assert pad.evidence["windows_default_check"] == "passes"
    p = pad.evidence["payload"]
    assert p["offset"] == start
    assert p["first_bytes"].startswith("feedface")
    assert p["entropy"] > 7.0
    (rng,) = pad.evidence["ranges"]
    assert rng["offset"] <= start and rng["offset"] + rng["length"] == start + length
    # the container differs from the clean one (signature-modified upstream)
    clean, _, _ = check_file(f, env.trust)
    padded, _, _ = check_file(out, env.trust)
    assert padded.container_sha256 != clean.container_sha256
    assert padded.primary_container_sha256 != clean.container_sha256


def test_zero_padding_beyond_alignment_is_flagged(env: Env) -> None:
    f = env.sign("zpad-src.exe")
    out = env.d / "zpadded.exe"
    _pad_inside_table(f, out, bytes(64))
    ours, theirs, found = both(env, out)
    assert ours is True and theirs is True
    assert "signature-padding" in found


def test_data_after_signature(env: Env) -> None:
    f = env.sign("after-src.exe")
    out = env.d / "after.exe"
    out.write_bytes(f.read_bytes() + b"MZ-appended-payload-" * 10)
    ours, theirs, _ = both(env, out)
    assert ours is False and theirs is False  # the digest covers the appended bytes
    _, anomalies, _ = check_file(out, env.trust)
    (a,) = [a for a in anomalies if a.rule == "data-after-signature"]
    size = f.stat().st_size
    assert a.evidence["ranges"] == [{"offset": size, "length": 200}]


def test_expired_signer_with_untrusted_timestamp_is_invalid(env: Env) -> None:
    """A timestamp from a TSA outside the trust store proves nothing."""
    f = env.sign(
        "expired-badts.exe",
        cert=env.paths.expired_signer_cert,
        key=env.paths.expired_signer_key,
        signing_time=P.EXPIRED_SIGNING_TIME,
        tsa_cert=env.other.tsa_chain,
        tsa_key=env.other.tsa_key,
        tsa_time=P.EXPIRED_SIGNING_TIME,
    )
    ours, theirs, _ = both(env, f)
    assert ours is False and theirs is False
    facts, anomalies, _ = check_file(f, env.trust)
    (ts,) = facts.details_dict()["signatures"][0]["timestamps"]
    assert ts["valid"] is False and "no trusted issuer" in ts["reason"]
    (u,) = [a for a in anomalies if a.rule == "untrusted-signer"]
    assert "timestamp not valid" in u.message


def test_payload_beyond_dwlength_osslsigncode_accepts_biv_flags(env: Env) -> None:
    """Only the directory size grows; the payload sits after dwLength (no second entry)."""
    f = env.sign("dironly-src.exe")
    data = bytearray(f.read_bytes())
    info = pe.read_pe_info(Blob.of_file(f))
    payload = b"\xfe\xed\xfa\xce" + bytes((i * 31 + 7) % 256 for i in range(1020))
    struct.pack_into("<I", data, info.security_dir_offset + 4, info.cert_size + len(payload))
    start = len(data)
    data += payload
    out = env.d / "dironly.exe"
    out.write_bytes(bytes(data))
    ours, theirs, found = both(env, out)
    # osslsigncode 2.9 refuses the table ("Corrupted attribute certificate table"); Windows'
    # default check does not look. biv keeps the Microsoft-style verdict for the signature
    # itself (intact) and fails the file through the critical signature-padding rule.
    assert theirs is False
    assert (
        "Corrupted attribute certificate table" in osslsign.verify(out, env.paths.root_cert).output
    )
    assert ours is True
    assert "signature-padding" in found and "multiple-certificates" not in found
    _, anomalies, _ = check_file(out, env.trust)
    (pad,) = [a for a in anomalies if a.rule == "signature-padding"]
    assert pad.evidence["payload"]["offset"] == start
    assert "dwLength ends at" in pad.message

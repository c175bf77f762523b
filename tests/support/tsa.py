"""Local timestamp authorities on 127.0.0.1 for signing tests (no network).

Two protocols, one server:

* ``tsa.url`` (``/rfc3161``): RFC 3161. The query (``application/timestamp-query``) is
  answered by ``openssl ts -reply`` with the TSA certificate from
  ``verifier._scenarios.pki``; use it with ``osslsigncode sign -ts URL``.
* ``tsa.legacy_url`` (``/authenticode``): Microsoft's legacy Authenticode timestamp protocol,
  for ``osslsigncode sign -t URL``. The request is base64 of a DER ``TimeStampRequest``
  (``SEQUENCE { 1.3.6.1.4.1.311.3.2.1, [attributes,] ContentInfo(data, signature value) }``);
  the answer is base64 of a PKCS#7 SignedData over that data, whose SignerInfo (signingTime,
  messageDigest = digest of the signature value) osslsigncode embeds as a countersignature
  (1.2.840.113549.1.9.6). Built with asn1crypto + cryptography; the time can be fixed
  (``legacy_time``) to make an expired signer valid "at the time of signing".

    with LocalTSA(pki) as tsa:
        sign(..., ts_url=tsa.url)          # or legacy_ts_url=tsa.legacy_url
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, core, x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from verifier._scenarios.pki import Pki

MAX_REQUEST = 1 << 16
LEGACY_COUNTERSIGNATURE_TYPE = "1.3.6.1.4.1.311.3.2.1"


class _AnySeq(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Any


_OPENSSL_CONF = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = {signer_cert}
certs = {certs}
signer_key = {signer_key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.4146.2.3
other_policies = 1.2.3.4.1
digests = sha1, sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class LocalTSA:
    """A threaded HTTP server on 127.0.0.1 answering RFC 3161 and legacy Authenticode requests."""

    def __init__(
        self,
        pki: Pki,
        *,
        legacy_time: dt.datetime | None = None,
        legacy_digest: str = "sha256",
    ) -> None:
        self.pki = pki
        self.legacy_time = legacy_time
        self.legacy_digest = legacy_digest
        self.requests: list[tuple[str, int]] = []  # (path, status) of every request served
        self._tmp = tempfile.TemporaryDirectory(prefix="biv-tsa-")
        self._dir = Path(self._tmp.name)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        paths = pki.write(self._dir / "pki")
        self.tsa_chain = paths.tsa_chain
        self.root_cert = paths.root_cert  # what ``-TSA-CAfile`` needs
        (self._dir / "serial").write_text("01\n")
        self._conf = self._dir / "openssl-ts.cnf"
        self._conf.write_text(
            _OPENSSL_CONF.format(
                dir=self._dir,
                signer_cert=paths.tsa_cert,
                certs=paths.intermediate_cert,
                signer_key=paths.tsa_key,
            )
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalTSA:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                tsa._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._tmp.cleanup()

    def __enter__(self) -> LocalTSA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "LocalTSA not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """RFC 3161 endpoint (``osslsigncode -ts``)."""
        return self.base_url + "/rfc3161"

    @property
    def legacy_url(self) -> str:
        """Legacy Authenticode endpoint (``osslsigncode -t``)."""
        return self.base_url + "/authenticode"

    # --- request handling --------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        try:
            n = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n <= 0 or n > MAX_REQUEST:
            self._send(h, 400, b"bad length", "text/plain")
            return
        body = h.rfile.read(n)
        try:
            if h.path == "/rfc3161":
                out = self.rfc3161_reply(body)
                self._send(h, 200, out, "application/timestamp-reply")
            elif h.path == "/authenticode":
                out = self.legacy_reply(body)
                self._send(h, 200, out, "application/octet-stream")
            else:
                self._send(h, 404, b"not found", "text/plain")
        except Exception as e:  # a test server: report and answer 500
            self._send(h, 500, str(e).encode(), "text/plain")

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        self.requests.append((h.path, status))
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def rfc3161_reply(self, query: bytes) -> bytes:
        """Answer an RFC 3161 TimeStampReq (DER) with ``openssl ts -reply``."""
        with self._lock, tempfile.TemporaryDirectory(dir=self._dir) as td:
            q = Path(td) / "query.tsq"
            r = Path(td) / "reply.tsr"
            q.write_bytes(query)
            proc = subprocess.run(
                [
                    "openssl", "ts", "-reply", "-config", str(self._conf),
                    "-queryfile", str(q), "-chain", self.tsa_chain, "-out", str(r),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )  # fmt: skip
            if proc.returncode != 0 or not r.exists():
                raise RuntimeError(f"openssl ts -reply failed: {proc.stderr.strip()}")
            return r.read_bytes()

    def legacy_reply(self, body: bytes) -> bytes:
        """Answer a legacy Authenticode timestamp request (base64 DER in, base64 DER out)."""
        der = base64.b64decode(b"".join(body.split()), validate=True)
        req = _AnySeq.load(der)
        if len(req) < 2:
            raise ValueError("TimeStampRequest too short")
        oid = core.ObjectIdentifier.load(req[0].dump()).dotted
        if oid != LEGACY_COUNTERSIGNATURE_TYPE:
            raise ValueError(f"not a TimeStampRequest ({oid})")
        content_info = cms.ContentInfo.load(req[len(req) - 1].dump())
        if content_info["content_type"].native != "data":
            raise ValueError("TimeStampRequest content is not data")
        blob: bytes = content_info["content"].native
        b64 = base64.b64encode(self._countersign(blob))
        # OpenSSL's base64 BIO (osslsigncode's decoder) wants PEM-style lines
        return b"".join(b64[i : i + 64] + b"\n" for i in range(0, len(b64), 64))

    def _countersign(self, blob: bytes) -> bytes:
        tsa = self.pki.tsa
        when = self.legacy_time or dt.datetime.now(dt.UTC)
        digest_name = self.legacy_digest
        md = hashlib.new(digest_name, blob).digest()
        attrs = [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [md]}),
        ]
        # DER: SET OF sorted by encoding (OpenSSL re-encodes before verifying)
        attrs.sort(key=lambda a: a.dump())
        signed_attrs = cms.CMSAttributes(attrs)
        to_sign = signed_attrs.dump()
        h = _hash_alg(digest_name)
        key = tsa.key
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(to_sign, padding.PKCS1v15(), h)
            sig_alg = "rsassa_pkcs1v15"
        else:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            sig = key.sign(to_sign, ec.ECDSA(h))
            sig_alg = f"{digest_name}_ecdsa"
        tsa_cert = x509.Certificate.load(tsa.cert_der)
        inter_cert = x509.Certificate.load(self.pki.intermediate.cert_der)
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {"issuer": tsa_cert.issuer, "serial_number": tsa_cert.serial_number}
                        )
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_name}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_alg}),
                "signature": sig,
            }
        )
        signed_data = cms.SignedData(
            {
                "version": "v1",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_name})],
                "encap_content_info": {"content_type": "data", "content": blob},
                "certificates": [tsa_cert, inter_cert],
                "signer_infos": [signer_info],
            }
        )
        out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
        return out


def _hash_alg(name: str) -> hashes.HashAlgorithm:
    algs: dict[str, hashes.HashAlgorithm] = {
        "sha1": hashes.SHA1(),
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }
    if name not in algs:
        raise ValueError(f"unsupported digest {name!r}")
    return algs[name]

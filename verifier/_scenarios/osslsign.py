"""A thin wrapper over ``osslsigncode``: an independent Authenticode implementation.

The demo signs its files with it, and the tests use it as the reference that biv's own
verifier is compared against. Versions differ in their flags and osslsigncode's exit code
is not a reliable verdict (a failed nested signature still ends in "Succeeded"), so:

* ``tool_info()`` reads ``--version`` and the usage text to learn the version and flags;
* ``verify()`` parses the *output text* per signature (digest match, chain, timestamp) and
  derives the verdict from it, never from the exit code.

Errors are ``OsslsigncodeError`` (a ``BivError``); a missing binary is ``ToolMissingError``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path

from verifier.errors import BivError, ToolMissingError
from verifier.record import record

TOOL = "osslsigncode"
TIMEOUT = 300
DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512")

StrPath = str | os.PathLike[str]


class OsslsigncodeError(BivError):
    """osslsigncode ran but did not do what was asked (signing failed, bad input...)."""


# --- tool detection ------------------------------------------------------------------------


@record
class ToolInfo:
    path: str
    version: tuple[int, ...]
    flags: frozenset[str]  # e.g. {"-ignore-cdp", "-ignore-crl", "-nest", "-ts", "-t"}
    banner: str

    def has(self, flag: str) -> bool:
        return flag in self.flags


_FLAG = re.compile(r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*)")


def parse_version(text: str) -> tuple[int, ...]:
    m = re.search(r"osslsigncode\s+(\d+(?:\.\d+)*)", text)
    if not m:
        return ()
    return tuple(int(x) for x in m.group(1).split("."))


def parse_flags(usage: str) -> frozenset[str]:
    return frozenset(_FLAG.findall(usage))


@functools.cache
def _tool_info(exe: str) -> ToolInfo:
    try:
        v = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        h = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise ToolMissingError(
            "osslsigncode is not installed (Debian/Ubuntu: apt-get install osslsigncode)",
            where=exe,
        ) from e
    banner = (v.stdout + v.stderr).strip()
    return ToolInfo(
        path=exe,
        version=parse_version(banner),
        flags=parse_flags(h.stdout + h.stderr),
        banner=banner.splitlines()[0] if banner else "",
    )


def tool_info() -> ToolInfo:
    """Locate osslsigncode and learn its version and flags (cached)."""
    exe = shutil.which(TOOL)
    if exe is None:
        raise ToolMissingError(
            "osslsigncode is not installed (Debian/Ubuntu: apt-get install osslsigncode)",
            where=TOOL,
        )
    return _tool_info(exe)


def available() -> bool:
    try:
        tool_info()
    except ToolMissingError:
        return False
    return True


def _run(args: list[str], *, where: str) -> subprocess.CompletedProcess[str]:
    info = tool_info()
    try:
        return subprocess.run(
            [info.path, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise OsslsigncodeError(f"osslsigncode timed out after {TIMEOUT}s", where=where) from e


def _bundle(files: Sequence[StrPath], directory: str, name: str) -> str:
    """Concatenate PEM files into one (osslsigncode takes a single file per option)."""
    out = Path(directory) / name
    with out.open("wb") as fh:
        for f in files:
            data = Path(f).read_bytes()
            fh.write(data if data.endswith(b"\n") else data + b"\n")
    return str(out)


def _files(x: StrPath | Sequence[StrPath] | None) -> list[StrPath]:
    if x is None:
        return []
    if isinstance(x, str | os.PathLike):
        return [x]
    return list(x)


# --- signing -------------------------------------------------------------------------------


def sign(
    in_path: StrPath,
    out_path: StrPath,
    cert: StrPath,
    key: StrPath,
    chain: StrPath | Sequence[StrPath] | None = None,
    *,
    digest: str = "sha256",
    nest: bool = False,
    ts_url: str | Sequence[str] | None = None,
    legacy_ts_url: str | Sequence[str] | None = None,
    description: str | None = None,
    url: str | None = None,
    signing_time: dt.datetime | None = None,
    tsa_cert: StrPath | None = None,
    tsa_key: StrPath | None = None,
    tsa_time: dt.datetime | None = None,
) -> None:
    """Sign ``in_path`` into ``out_path`` (replaced if it exists).

    ``cert`` is the signer certificate (PEM; may already hold the chain), ``chain`` extra PEM
    files appended to it. ``nest`` appends a nested signature to an already-signed file.
    ``ts_url`` (RFC 3161) / ``legacy_ts_url`` (Authenticode ``-t``) timestamp over HTTP;
    ``tsa_cert`` + ``tsa_key`` make osslsigncode timestamp with its built-in TSA at
    ``tsa_time`` instead (no server needed). ``signing_time`` fixes the signingTime attribute
    (deterministic output).
    """
    info = tool_info()
    where = os.fspath(in_path)
    if digest not in DIGESTS:
        raise OsslsigncodeError(f"unsupported digest {digest!r}", where=where)
    if not Path(in_path).is_file():
        raise OsslsigncodeError("input file does not exist", where=where)
    out = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="biv-sign-", dir=out.parent) as td:
        certs = _bundle([cert, *_files(chain)], td, "certs.pem")
        tmp_out = str(Path(td) / "signed.bin")
        args = ["sign", "-certs", certs, "-key", os.fspath(key), "-h", digest]
        if nest:
            _need(info, "-nest", where)
            args.append("-nest")
        if description:
            args += ["-n", description]
        if url:
            args += ["-i", url]
        if signing_time is not None:
            _need(info, "-time", where)
            args += ["-time", str(int(signing_time.timestamp()))]
        for u in _strs(ts_url):
            _need(info, "-ts", where)
            args += ["-ts", u]
        for u in _strs(legacy_ts_url):
            _need(info, "-t", where)
            args += ["-t", u]
        if tsa_cert is not None or tsa_key is not None:
            if tsa_cert is None or tsa_key is None:
                raise OsslsigncodeError("tsa_cert and tsa_key go together", where=where)
            _need(info, "-TSA-certs", where)
            args += ["-TSA-certs", os.fspath(tsa_cert), "-TSA-key", os.fspath(tsa_key)]
            if tsa_time is not None:
                args += ["-TSA-time", str(int(tsa_time.timestamp()))]
        args += ["-in", os.fspath(in_path), "-out", tmp_out]
        proc = _run(args, where=where)
        text = proc.stdout + proc.stderr
        if "Succeeded" not in proc.stdout or not Path(tmp_out).is_file():
            raise OsslsigncodeError(f"signing failed: {_first_error(text)}", where=where)
        Path(tmp_out).replace(out)


def _strs(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _need(info: ToolInfo, flag: str, where: str) -> None:
    if not info.has(flag):
        raise OsslsigncodeError(
            f"this osslsigncode ({'.'.join(map(str, info.version)) or '?'}) has no {flag} flag",
            where=where,
        )


def _first_error(text: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s and s not in ("Failed", "Succeeded") and not s.startswith("Connecting to"):
            return s
    return "no output"


def extract_signature(in_path: StrPath, out_path: StrPath) -> bytes:
    """Write the PKCS#7 SignedData (DER) of ``in_path`` to ``out_path`` and return it."""
    where = os.fspath(in_path)
    out = Path(out_path)
    out.unlink(missing_ok=True)
    proc = _run(["extract-signature", "-in", where, "-out", str(out)], where=where)
    if "Succeeded" not in proc.stdout or not out.is_file():
        raise OsslsigncodeError(
            f"extract-signature failed: {_first_error(proc.stdout + proc.stderr)}", where=where
        )
    return out.read_bytes()


def remove_signature(in_path: StrPath, out_path: StrPath) -> None:
    where = os.fspath(in_path)
    out = Path(out_path)
    out.unlink(missing_ok=True)
    proc = _run(["remove-signature", "-in", where, "-out", str(out)], where=where)
    if "Succeeded" not in proc.stdout or not out.is_file():
        raise OsslsigncodeError(
            f"remove-signature failed: {_first_error(proc.stdout + proc.stderr)}", where=where
        )


# --- verification --------------------------------------------------------------------------


@record
class SignatureResult:
    """One signature (primary or nested) as osslsigncode reported it."""

    index: int
    primary: bool
    digest_algorithm: str | None = None  # "sha256", ...
    current_digest: str | None = None  # lower-case hex, from the signature
    calculated_digest: str | None = None  # lower-case hex, computed over the file
    signer_subject: str | None = None  # OpenSSL one-line form: /C=XX/O=.../CN=...
    signer_issuer: str | None = None
    signer_serial: str | None = None  # upper-case hex as printed
    signing_time: dt.datetime | None = None
    timestamp_kind: str | None = None  # "rfc3161" | "authenticode" | None
    timestamp_time: dt.datetime | None = None
    timestamp_verified: bool | None = None
    chain_verified: bool = False  # "Signature verification: ok"
    errors: tuple[str, ...] = ()

    @property
    def digest_match(self) -> bool:
        return self.current_digest is not None and self.current_digest == self.calculated_digest

    @property
    def verified(self) -> bool:
        return self.chain_verified and self.digest_match

    @property
    def signer_cn(self) -> str | None:
        if self.signer_subject is None:
            return None
        m = re.search(r"/CN=([^/]*)", self.signer_subject)
        return m.group(1) if m else None


@record
class VerifyResult:
    path: str
    signed: bool
    signatures: tuple[SignatureResult, ...] = ()
    pe_checksum_ok: bool | None = None  # None when not printed (non-PE)
    verified_count: int | None = None  # "Number of verified signatures"
    tool_succeeded: bool = False  # osslsigncode's own last line (not trusted alone)
    errors: tuple[str, ...] = ()
    output: str = field(default="", repr=False)

    @property
    def valid(self) -> bool:
        """Every signature verified (digest matches, chain ok) and there is at least one."""
        return self.signed and bool(self.signatures) and all(s.verified for s in self.signatures)

    @property
    def primary(self) -> SignatureResult | None:
        return self.signatures[0] if self.signatures else None


_DATE_FMT = "%b %d %H:%M:%S %Y GMT"


def _date(s: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(" ".join(s.split()), _DATE_FMT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _field(section: str, label: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(label)}\s*:\s*(.*?)\s*$", section, re.M)
    return m.group(1) if m else None


def _hex(s: str | None) -> str | None:
    if s is None:
        return None
    m = re.match(r"([0-9A-Fa-f]+)", s)
    return m.group(1).lower() if m else None


def _parse_signature(index: int, primary: bool, sec: str) -> SignatureResult:
    alg = _field(sec, "Message digest algorithm")
    subject = issuer = serial = None
    m = re.search(r"Signer's certificate:(.*?)(?:\n\S|\Z)", sec, re.S)
    if m:
        block = m.group(1)
        subject = _field(block, "Subject")
        issuer = _field(block, "Issuer")
        serial = _field(block, "Serial")
    signing_time = None
    ts_time = None
    ts_kind = None
    auth = re.search(r"Authenticated attributes:(.*?)(?:\n\S|\Z)", sec, re.S)
    if auth:
        st = _field(auth.group(1), "Signing time")
        signing_time = _date(st) if st else None
    cs = re.search(r"Countersignatures:(.*?)(?:\n\S|\Z)", sec, re.S)
    if cs:
        tt = _field(cs.group(1), "Timestamp time")
        ts_time = _date(tt) if tt else None
        if ts_time is not None:
            ts_kind = (
                "rfc3161" if re.search(r"Timestamp serial number:\s*\S", sec) else "authenticode"
            )
    ts_verified: bool | None = None
    tsv = _field(sec, "Timestamp Server Signature verification")
    if tsv is not None:
        ts_verified = tsv.startswith("ok")
    sv = _field(sec, "Signature verification")
    errors = tuple(
        s.strip()
        for s in sec.splitlines()
        if re.search(r"Error:|MISMATCH|error|failed|Failed", s)
        and not s.strip().startswith(("Signature verification: ok", "CRL online"))
    )
    return SignatureResult(
        index=index,
        primary=primary,
        digest_algorithm=alg.lower().replace("sha2-", "sha") if alg else None,
        current_digest=_hex(_field(sec, "Current message digest")),
        calculated_digest=_hex(_field(sec, "Calculated message digest")),
        signer_subject=subject,
        signer_issuer=issuer,
        signer_serial=serial,
        signing_time=signing_time,
        timestamp_kind=ts_kind,
        timestamp_time=ts_time,
        timestamp_verified=ts_verified,
        chain_verified=sv is not None and sv.startswith("ok"),
        errors=errors,
    )


def parse_verify_output(path: str, text: str) -> VerifyResult:
    """Turn ``osslsigncode verify`` output (stdout + stderr) into a ``VerifyResult``."""
    parts = re.split(r"^Signature Index:\s*(\d+)[^\n]*$", text, flags=re.M)
    head = parts[0]
    sigs: list[SignatureResult] = []
    for i in range(1, len(parts) - 1, 2):
        idx = int(parts[i])
        sigs.append(_parse_signature(idx, idx == 0, parts[i + 1]))
    checksum_ok: bool | None = None
    if re.search(r"Calculated PE checksum", text) or "invalid PE checksum" in text:
        checksum_ok = False
    elif re.search(r"^PE checksum\s*:", text, re.M):
        checksum_ok = True
    n = re.search(r"Number of verified signatures:\s*(\d+)", text)
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    unsigned = bool(re.search(r"No signature found|Unable to extract existing signature", text))
    errors = tuple(
        s
        for s in (x.strip() for x in head.splitlines())
        if s and re.search(r"error|Error|Failed|failed|Unable|unsupported", s)
    )
    return VerifyResult(
        path=path,
        signed=bool(sigs) and not unsigned,
        signatures=tuple(sigs),
        pe_checksum_ok=checksum_ok,
        verified_count=int(n.group(1)) if n else None,
        tool_succeeded="Succeeded" in lines[-3:] if lines else False,
        errors=errors,
        output=text,
    )


def verify(
    path: StrPath,
    cafile: StrPath | Sequence[StrPath] | None = None,
    tsa_cafile: StrPath | Sequence[StrPath] | None = None,
    *,
    crlfile: StrPath | None = None,
    at: dt.datetime | None = None,
    ignore_timestamp: bool = False,
) -> VerifyResult:
    """Run ``osslsigncode verify`` and parse its output.

    ``cafile`` (one PEM or several, bundled) is the trust store; ``tsa_cafile`` defaults to
    it. CRL distribution points and CRL checks are switched off when the installed version
    has ``-ignore-cdp`` / ``-ignore-crl`` (biv fetches no CRLs either). ``at`` verifies as of a
    given time.
    """
    info = tool_info()
    p = os.fspath(path)
    if not Path(p).is_file():
        raise OsslsigncodeError("file does not exist", where=p)
    with tempfile.TemporaryDirectory(prefix="biv-verify-") as td:
        args = ["verify"]
        ca = _files(cafile)
        if ca:
            args += ["-CAfile", _bundle(ca, td, "ca.pem")]
        tsa = _files(tsa_cafile) or ca
        if tsa:
            args += ["-TSA-CAfile", _bundle(tsa, td, "tsa-ca.pem")]
        if crlfile is not None:
            args += ["-CRLfile", os.fspath(crlfile)]
        for flag in ("-ignore-cdp", "-ignore-crl"):
            if info.has(flag):
                args.append(flag)
        if ignore_timestamp:
            _need(info, "-ignore-timestamp", p)
            args.append("-ignore-timestamp")
        if at is not None:
            args += ["-time", str(int(at.timestamp()))]
        args += ["-in", p]
        proc = _run(args, where=p)
    return parse_verify_output(p, proc.stdout + "\n" + proc.stderr)

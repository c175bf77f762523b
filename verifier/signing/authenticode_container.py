"""The canonical form of a certificate table with its nested signatures set aside.

``primary_container_sha256``: when the primary signer carries nested signatures
(unauthenticated attribute 1.3.6.1.4.1.311.2.4.1, what ``signtool /as`` and
``osslsigncode -nest`` append), the attribute is cut out of the primary PKCS#7's DER (its
ancestors' lengths re-encoded, an emptied unsignedAttrs field removed), the WIN_CERTIFICATE is
rebuilt with the same dwLength convention (exact or 8-aligned) and zero alignment padding
(unless the original slack was not clean alignment, in which case it is kept verbatim), and
other entries are kept as they are. Without nested signatures it equals the table's sha256.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from verifier.errors import MalformedInputError
from verifier.signing import asn1
from verifier.signing.authenticode_table import Entry, align8

_NESTED_OID_DER = bytes.fromhex("060a2b060104018237020401")


def _strip_nested(der: bytes) -> bytes | None:
    """The PKCS#7 with its nested-signature attribute(s) cut out, or None if it has none."""
    try:
        changed = False
        for _ in range(8):
            top = asn1.read_tlv(der, 0)
            ci = asn1.children(der, top)
            wrap = ci[1]
            sd = asn1.read_tlv(der, wrap.content, wrap.end)
            sd_children = asn1.children(der, sd)
            sis = sd_children[-1]
            si = asn1.children(der, sis)[0]
            si_children = asn1.children(der, si)
            unauth = si_children[-1]
            if unauth.tag != 0xA1:
                break
            attrs = asn1.children(der, unauth)
            nested = [
                a
                for a in attrs
                if der[a.content : a.content + len(_NESTED_OID_DER)] == _NESTED_OID_DER
            ]
            if not nested:
                break
            path = [top, wrap, sd, sis, si]
            if len(attrs) == 1:
                der = asn1.splice_out(der, path, unauth)
            else:
                der = asn1.splice_out(der, [*path, unauth], nested[0])
            changed = True
        return der if changed else None
    except (MalformedInputError, IndexError):
        return None


def primary_container(data: bytes, entries: Sequence[Entry], base: int) -> str | None:
    """sha256 of the table in canonical form (None: the primary has no nested signature)."""
    if not entries or entries[0].der is None:
        return None
    e = entries[0]
    if e.der is None:
        return None
    stripped = _strip_nested(e.der)
    if stripped is None:
        return None
    old_der_len = len(e.der)
    exact = e.length == 8 + old_der_len
    dw = 8 + len(stripped) if exact else align8(8 + len(stripped))
    clean = len(e.slack) <= e.allowed_slack and not any(e.slack)
    if clean:
        body = stripped + bytes(align8(8 + len(stripped)) - 8 - len(stripped))
        if not exact:
            dw = 8 + len(body)
    else:
        body = stripped + e.slack
        dw = e.length - old_der_len + len(stripped)
    head = struct.pack("<IHH", dw, e.revision, e.cert_type)
    rest_start = (entries[1].offset - base) if len(entries) > 1 else len(data)
    out = head + body + data[rest_start:]
    return hashlib.sha256(out).hexdigest()

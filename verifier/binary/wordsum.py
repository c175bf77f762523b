"""The sum of a buffer's 16-bit little-endian words modulo 0xFFFF (the PE checksum's core).

Why: the PE checksum must be computed over every byte of every PE whose header stores one,
and in pure Python (``int.from_bytes`` then a modulo) it costs several times what hashing
the same bytes costs. Since 2**16 == 1 (mod 0xFFFF), the sum of the words equals the
buffer's little-endian integer value modulo 0xFFFF. libcrypto (already loaded by Python's
``hashlib`` on Linux) builds that integer (``BN_lebin2bn``) and folds it in C (shift, mask,
add: linear time, the GIL released); elsewhere, or if libcrypto misbehaves, the same
arithmetic runs in Python.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref

MOD = 0xFFFF


def py_mod_ffff(data: bytes | bytearray | memoryview) -> int:
    """The little-endian value of ``data`` modulo 0xFFFF, in Python (``int.from_bytes`` is
    several times faster on ``bytes`` than on a memoryview, copy included)."""
    return int.from_bytes(bytes(data), "little") % MOD


class _LibCrypto:
    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, ci = ctypes.c_void_p, ctypes.c_int
        self.new = lib.BN_new
        self.new.restype, self.new.argtypes = vp, []
        self.free = lib.BN_free
        self.free.restype, self.free.argtypes = None, [vp]
        self.lebin2bn = lib.BN_lebin2bn
        self.lebin2bn.restype, self.lebin2bn.argtypes = vp, [vp, ci, vp]
        self.rshift = lib.BN_rshift
        self.rshift.restype, self.rshift.argtypes = ci, [vp, vp, ci]
        self.mask_bits = lib.BN_mask_bits
        self.mask_bits.restype, self.mask_bits.argtypes = ci, [vp, ci]
        self.add = lib.BN_add
        self.add.restype, self.add.argtypes = ci, [vp, vp, vp]
        self.num_bits = lib.BN_num_bits
        self.num_bits.restype, self.num_bits.argtypes = ci, [vp]
        self.mod_word = lib.BN_mod_word
        self.mod_word.restype, self.mod_word.argtypes = ctypes.c_ulong, [vp, ctypes.c_ulong]
        self._local = threading.local()

    def _pair(self) -> tuple[int, int]:
        pair: tuple[int, int] | None = getattr(self._local, "pair", None)
        if pair is None:
            a, b = self.new(), self.new()
            if not a or not b:
                raise MemoryError("BN_new failed")
            pair = (a, b)
            self._local.pair = pair  # one pair per thread, for the process's lifetime
        return pair

    def _load_into(self, a: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        mv = memoryview(data)
        buf = (
            (ctypes.c_char * n).from_buffer(mv)
            if not mv.readonly and mv.c_contiguous
            else (ctypes.c_char * n).from_buffer_copy(mv)
        )
        if not self.lebin2bn(buf, n, a):
            raise ValueError("BN_lebin2bn failed")

    def _fold(self, a: int, hi: int) -> int:
        """``a`` modulo 0xFFFF (``a`` is folded in place; ``hi`` is scratch)."""
        bits = self.num_bits(a)
        while bits > 128:
            s = (bits >> 5) << 4
            if not (self.rshift(hi, a, s) and self.mask_bits(a, s) and self.add(a, a, hi)):
                raise ValueError("BN arithmetic failed")
            bits = self.num_bits(a)
        r = int(self.mod_word(a, MOD))
        if r == ctypes.c_ulong(-1).value:
            raise ValueError("BN_mod_word failed")
        return r

    def mod_ffff(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n == 0:
            return 0
        if n > 1 << 30:
            return py_mod_ffff(data)
        a, hi = self._pair()
        self._load_into(a, data)
        return self._fold(a, hi)

    def accumulate(self, acc: int, data: bytes | bytearray | memoryview) -> None:
        """``acc += value of data``: one conversion and one addition, no folding yet."""
        a, _hi = self._pair()
        self._load_into(a, data)
        if not self.add(acc, acc, a):
            raise ValueError("BN_add failed")

    def result(self, acc: int) -> int:
        _a, hi = self._pair()
        return self._fold(acc, hi)


def _loaded_libcrypto() -> str | None:
    """The path of the libcrypto this process already mapped (Linux), else None."""
    import hashlib  # noqa: F401  (maps libcrypto through _hashlib)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").split(None, 5)[-1]
                if "/libcrypto" in path and ".so" in path and os.path.isfile(path):
                    return path
    except OSError:
        return None
    return None


def _load() -> _LibCrypto | None:
    if not sys.platform.startswith("linux") or os.environ.get("BIV_PURE_PYTHON_CHECKSUM"):
        return None
    path = _loaded_libcrypto()
    if path is None:
        return None
    try:
        lib = _LibCrypto(ctypes.CDLL(path))
        probe = bytes(range(256)) * 67 + b"\x01\x02\x03"
        for piece in (probe, probe[:1], probe[:7], probe[3:]):
            if lib.mod_ffff(piece) != py_mod_ffff(piece):
                return None
    except (OSError, AttributeError, ValueError, MemoryError):
        return None
    return lib


_LIB: _LibCrypto | None = None
_LOADED = False
_LOCK = threading.Lock()


def backend() -> str:
    """'libcrypto' or 'python': what ``mod_ffff`` uses in this process."""
    return "libcrypto" if _lib() is not None else "python"


def _lib() -> _LibCrypto | None:
    global _LIB, _LOADED
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                _LIB, _LOADED = _load(), True
    return _LIB


def mod_ffff(data: bytes | bytearray | memoryview) -> int:
    """The little-endian value of ``data`` modulo 0xFFFF (= its 16-bit word sum mod 0xFFFF)."""
    lib = _lib()
    if lib is not None:
        try:
            return lib.mod_ffff(data)
        except (ValueError, MemoryError):
            pass
    return py_mod_ffff(data)


class WordSum:
    """The sum of many pieces' little-endian values modulo 0xFFFF, as ``mod_ffff`` of each
    summed, but cheaper: with libcrypto each piece is converted and added to one big number,
    and folding happens once, at the end (the conversion is the one cost per byte left)."""

    def __init__(self) -> None:
        self._lib = _lib()
        self._acc: int | None = None
        self._py = 0  # pieces summed in Python (no libcrypto, or it failed)
        if self._lib is not None:
            acc = self._lib.new()
            if acc:
                self._acc = acc
                weakref.finalize(self, self._lib.free, acc)

    def add(self, data: bytes | bytearray | memoryview) -> None:
        if not len(data):
            return
        if self._lib is not None and self._acc is not None and len(data) <= 1 << 30:
            try:
                self._lib.accumulate(self._acc, data)
                return
            except (ValueError, MemoryError):
                pass
        self._py = (self._py + py_mod_ffff(data)) % MOD

    def value(self) -> int:
        """The sum so far, modulo 0xFFFF."""
        total = self._py
        if self._lib is not None and self._acc is not None:
            total += self._lib.result(self._acc)  # folds the accumulator in place: same value
        return total % MOD

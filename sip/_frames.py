"""Bulk copies in and out of pjsua2's SWIG ``std::vector<unsigned char>``.

``bytes(frame.buf)`` walks the vector one element at a time through SWIG
(about 440 us a 640-byte frame).  The vector's three pointers (begin, end, end
of storage in libstdc++) let ctypes copy it with one memmove (about 2 us).
:func:`select_copy` proves that layout at start-up and falls back to the slow
path if it does not hold.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

_VectorHead = ctypes.c_size_t * 3


def vector_bytes_fast(vec: Any) -> bytes:
    begin, end, _ = _VectorHead.from_address(int(vec.this))
    return ctypes.string_at(begin, end - begin)


def vector_write_fast(vec: Any, data: bytes) -> None:
    if vec.size() != len(data):
        vec.resize(len(data))
    begin, _, _ = _VectorHead.from_address(int(vec.this))
    ctypes.memmove(begin, data, len(data))


def vector_bytes_slow(vec: Any) -> bytes:
    return bytes(vec)


def vector_write_slow(vec: Any, data: bytes) -> None:
    vec.resize(len(data))
    for i, b in enumerate(data):
        vec[i] = b


def layout_is_libstdcxx(size: int = 640) -> bool:
    frame = pj.MediaFrame()
    vec = frame.buf
    pattern = bytes((i * 7 + 3) % 256 for i in range(size))
    vector_write_slow(vec, pattern)
    try:
        if vector_bytes_fast(vec) != pattern:
            return False
        vector_write_fast(vec, pattern[::-1])
        return bytes(vec) == pattern[::-1]
    except (OSError, ValueError):
        return False


def select_copy() -> tuple[Callable[[Any], bytes], Callable[[Any, bytes], None], bool]:
    """The (read, write) pair to use, and whether it is the fast one."""
    if layout_is_libstdcxx():
        return vector_bytes_fast, vector_write_fast, True
    return vector_bytes_slow, vector_write_slow, False

"""Type stub of the cffi extension built from build_nghttp2.py (cffi has no typed API)."""

from typing import Any

ffi: Any
lib: Any

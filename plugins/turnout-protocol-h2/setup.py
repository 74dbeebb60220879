"""Builds the cffi extension (turnout_protocol_h2.codec._nghttp2) at install time; the rest of
the metadata is in pyproject.toml. Needs a C compiler and libnghttp2's headers
(Debian/Ubuntu: apt-get install libnghttp2-dev)."""

from setuptools import setup

setup(cffi_modules=["build_nghttp2.py:ffibuilder"])

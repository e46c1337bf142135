"""Only here because cffi's out-of-line API build hooks into setuptools through ``cffi_modules``."""

from setuptools import setup

setup(cffi_modules=["csrc/build_reaper.py:ffibuilder"])

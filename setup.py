"""Only the optional C extension lives here; everything else is in pyproject.toml.

zfsglacier/plumbing/_fletcher.c is ZFS's fletcher-4 in C (~10x the numpy form in zfsglacier/plumbing/fletcher.py,
which stays as the fallback): `optional=True`, so a machine without a compiler still installs.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("zfsglacier.plumbing._fletcher", ["zfsglacier/plumbing/_fletcher.c"], optional=True,
                             extra_compile_args=["-O2"])])

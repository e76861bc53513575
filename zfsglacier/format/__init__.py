"""Layer 1, the archive format (formats/SPEC.md): the public header, footer and signature block
(header), key files, slots and signatures (keys), the chunked AES-256-GCM body (stream), the codec
registry (compression), metadata schemas (metadata), ZFS send streams (zfsstream), the 2013 format
(legacy), and encrypt/decrypt composed from them (archive).  Imports plumbing and errors only."""

import importlib
import sys


def _pycryptodome_without_cffi():
    """PyCryptodome binds its C code with cffi when cffi can be imported, else with ctypes.  The
    cffi binding parses every module's C declarations with pycparser as it is imported: 50-80 ms
    of every zg-* run on the 2-core machine (measured 2026-12: importing zg-decrypt and opening an
    x25519 slot took 186-224 ms, 128-144 ms with ctypes), and AES-GCM runs at the same speed
    either way (1.16-1.48 GB/s cffi, 1.39-1.51 GB/s ctypes, 1 MiB chunks).  So PyCryptodome is
    loaded with cffi hidden, which is its documented fallback; cffi stays importable for others."""
    if "Crypto.Util._raw_api" in sys.modules:
        return  # bound already, by whoever imported it first
    had, cffi = "cffi" in sys.modules, sys.modules.get("cffi")
    sys.modules["cffi"] = None  # makes `import cffi` raise ImportError
    try:
        importlib.import_module("Crypto.Util._raw_api")
    except ImportError:
        pass  # a PyCryptodome without that module: its own choice stands
    finally:
        if had:
            sys.modules["cffi"] = cffi
        else:
            del sys.modules["cffi"]


_pycryptodome_without_cffi()

"""SHA-256 for the run's records (spec, lockfile, probe and cache keys). Imports nothing of podmagic.

`hashlib` loads OpenSSL's libcrypto: 5 ms of each CLI start, for one hash a run. CPython's own SHA-256
module gives the same digests; hashlib is the fallback where an interpreter lacks it.
"""

try:
    from _sha256 import sha256  # CPython 3.10, 3.11
except ImportError:
    try:
        from _sha2 import sha256  # CPython 3.12 and later
    except ImportError:
        from hashlib import sha256

__all__ = ["sha256"]

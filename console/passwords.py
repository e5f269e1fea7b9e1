"""Console passwords: salted scrypt hashes, as `cvco-ipn console hash-password` prints them for
`CVCO_CONSOLE_USERS`, and their constant-time check."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
"""scrypt's cost: 16 MiB of memory and some tens of milliseconds a check, which also slows guessing."""


def hash_password(password: str) -> str:
    """`scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>` for this password, with a new random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P)
    return f"{SCHEME}${N}${R}${P}${salt.hex()}${digest.hex()}"


def is_password_hash(text: str) -> bool:
    """Whether `text` has the form `hash_password` writes (checked when the settings load)."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME or not all(part.isdigit() for part in parts[1:4]):
        return False
    try:
        bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        return False
    return True


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored` (compared in constant time)."""
    if not is_password_hash(stored):
        return False
    _, n, r, p, salt, expected = stored.split("$")
    digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(digest, bytes.fromhex(expected))

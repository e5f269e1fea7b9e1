"""The form API signature (form-api.md §1), for forms, browser returns and notifications alike, and the
one authentication of a notification that the receiver and the workers both run.

Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

from schemas.errors import PermanentError
from schemas.settings import Algorithm, Settings, ShopConfig

SIGNATURE_FIELD = "signature"

SignatureVerdict = Literal["valid", "mismatch", "no_key"]


def signed_string(fields: Mapping[str, str], key: str) -> str:
    """The `+`-joined values of every `vads_` field, sorted by name in byte order, then the key."""
    # str ordering is code-point ordering, identical to UTF-8 byte ordering, which is what the platform uses.
    values = [fields[name] for name in sorted(fields) if name.startswith("vads_")]
    values.append(key)
    return "+".join(values)


def compute_signature(fields: Mapping[str, str], key: str, algorithm: Algorithm) -> str:
    """The `signature` value for these fields under this key and algorithm."""
    return _signature(signed_string(fields, key).encode("utf-8"), key, algorithm)


def _signature(message: bytes, key: str, algorithm: Algorithm) -> str:
    if algorithm == "HMAC-SHA-256":
        digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")
    return hashlib.sha1(message, usedforsecurity=False).hexdigest()


def verify_signature(fields: Mapping[str, str], signature: str, shop: ShopConfig) -> SignatureVerdict:
    """Check `signature` against the shop's key for the message's `vads_ctx_mode`, in constant time.

    Every algorithm the shop accepts is tried, so a shop switching from SHA-1 to HMAC-SHA-256 keeps
    working during the switch. Returns "no_key" when the shop has no key for that mode.
    """
    key = shop.key_for(fields.get("vads_ctx_mode", ""))
    if key is None:
        return "no_key"
    claimed = signature.encode("utf-8")
    message = signed_string(fields, key).encode("utf-8")  # the same for every algorithm
    for algorithm in shop.algorithms:
        expected = _signature(message, key, algorithm).encode("ascii")
        if hmac.compare_digest(expected, claimed):
            # stopping here only shortens the time of a valid signature: a forger, who never has one,
            # always waits for every algorithm
            return "valid"
    return "mismatch"


def sign_fields(fields: Mapping[str, str], shop: ShopConfig, mode: str) -> str:
    """Sign outgoing fields (a payment form, a simulated notification) with the shop's preferred algorithm."""
    key = shop.key_for(mode)
    if key is None:
        raise ValueError(f"shop has no key for mode {mode}")
    return compute_signature(fields, key, shop.algorithms[0])


class NotAuthentic(PermanentError):
    """The notification does not authenticate against these settings; the message is a one-line reason."""


class UnknownShop(NotAuthentic):
    """The notification names a shop these settings do not know."""


class ModeNotAccepted(NotAuthentic):
    """The shop is known, but does not accept the notification's `vads_ctx_mode`."""


class SignatureMismatch(NotAuthentic):
    """The signature does not verify against the shop's key (a forgery, or keys rotated since it was sent)."""


def authenticate(fields: Mapping[str, str], settings: Settings) -> None:
    """Accept the notification only from a configured shop, in a mode it accepts, correctly signed.

    The receiver runs it before queueing, the worker again before applying (never trust the queue).
    """
    shop_id = fields.get("vads_site_id", "")
    shop = settings.shops.get(shop_id)
    if shop is None:
        raise UnknownShop(f"vads_site_id {shop_id!r} is not a configured shop")
    mode = fields.get("vads_ctx_mode", "")
    if mode not in shop.modes:
        raise ModeNotAccepted(f"shop {shop_id} does not accept vads_ctx_mode {mode!r}")
    # never "no_key" here: a ShopConfig holds a key for every mode it accepts
    if verify_signature(fields, fields.get(SIGNATURE_FIELD, ""), shop) != "valid":
        raise SignatureMismatch("signature mismatch")

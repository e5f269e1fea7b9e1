"""The receiver's checks of a parsed `POST /ipn` body, with no I/O: shop, mode, signature, notification.

Shared by the receiver and `cvco-ipn rejected retry`, which runs a kept request through them again
once the configuration changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest.rejections import Rejected
from ingest.signature import SIGNATURE_FIELD, verify_signature
from schemas.settings import Settings

NOTIFICATION_FIELDS = ("vads_hash", "vads_url_check_src", "vads_trans_status")
"""Fields every notification carries and a payment form or a browser return (signed too) lacks."""


def check_notification(fields: Mapping[str, str], settings: Settings) -> None:
    """Raise `Rejected` unless the fields are a signed notification of an accepted shop and mode.

    The signature is checked before the notification fields: a payment form is as well signed as a
    notification, and only its missing fields tell them apart.
    """
    signature = fields.get(SIGNATURE_FIELD)
    shop_id = fields.get("vads_site_id")
    if signature is None:
        raise Rejected(400, "bad_request", "not a notification: no signature field")
    if shop_id is None:
        raise Rejected(400, "bad_request", "not a notification: no vads_site_id field")
    shop = settings.shops.get(shop_id)
    if shop is None:
        raise Rejected(403, "forbidden", "unknown vads_site_id", kept="shop")
    if fields.get("vads_ctx_mode") not in shop.modes:
        raise Rejected(403, "forbidden", "vads_ctx_mode not accepted for this shop", kept="mode")
    verdict = verify_signature(fields, signature, shop)
    if verdict == "no_key":
        raise Rejected(403, "forbidden", "no key for this vads_ctx_mode", kept="mode")
    if verdict == "mismatch":
        raise Rejected(401, "bad_signature", "signature mismatch", kept="signature")
    if not all(map(fields.__contains__, NOTIFICATION_FIELDS)):
        missing = [name for name in NOTIFICATION_FIELDS if name not in fields]
        raise Rejected(
            400,
            "bad_request",
            f"signed, but not a notification (a payment form or a browser return?): no {missing[0]}",
            kept="not_notification",
        )

"""The receiver's checks of a parsed `POST /ipn` body, with no I/O: `authenticate`, then notification.

Shared by the receiver and `cvco-ipn rejected retry`, which runs a kept request through them again
once the configuration changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.signature import SIGNATURE_FIELD, ModeNotAccepted, SignatureMismatch, UnknownShop, authenticate
from ingest.rejections import Rejected
from schemas.settings import Settings

NOTIFICATION_FIELDS = ("vads_hash", "vads_url_check_src", "vads_trans_status")
"""Fields every notification carries and a payment form or a browser return (signed too) lacks."""


def check_notification(fields: Mapping[str, str], settings: Settings) -> None:
    """Raise `Rejected` unless the fields are a signed notification of an accepted shop and mode.

    The signature is checked before the notification fields: a payment form is as well signed as a
    notification, and only its missing fields tell them apart.
    """
    if SIGNATURE_FIELD not in fields:
        raise Rejected(400, "bad_request", "not a notification: no signature field")
    if "vads_site_id" not in fields:
        raise Rejected(400, "bad_request", "not a notification: no vads_site_id field")
    # the worker runs the same authenticate(); the receiver answers each failure in its own words
    try:
        authenticate(fields, settings)
    except UnknownShop:
        raise Rejected(403, "forbidden", "unknown vads_site_id", kept="shop") from None
    except ModeNotAccepted:
        raise Rejected(403, "forbidden", "vads_ctx_mode not accepted for this shop", kept="mode") from None
    except SignatureMismatch:
        raise Rejected(401, "bad_signature", "signature mismatch", kept="signature") from None
    if not all(map(fields.__contains__, NOTIFICATION_FIELDS)):
        missing = [name for name in NOTIFICATION_FIELDS if name not in fields]
        raise Rejected(
            400,
            "bad_request",
            f"signed, but not a notification (a payment form or a browser return?): no {missing[0]}",
            kept="not_notification",
        )

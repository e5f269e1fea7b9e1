"""HTML for a signed payment form: the `<form>` fragment to embed, or a complete HTML5 page.

Every name, value and the action are escaped (`html.escape(..., quote=True)`), so a value such as
`"><script>` stays text. The button has no `name`: the browser posts the signed fields and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

BUTTON_LABEL = "Payer par Chèque-Vacances Connect"
FORM_ID = "cvco-payment-form"
PAGE_TITLE = "Paiement par Chèque-Vacances Connect"


def render_form(fields: Mapping[str, str], action: str, *, form_id: str = FORM_ID) -> str:
    """The `<form method="POST">` with one hidden input per field, in the given order, and the button."""
    inputs = "\n".join(
        f'  <input type="hidden" name="{escape(name, quote=True)}" value="{escape(value, quote=True)}">'
        for name, value in fields.items()
    )
    return (
        f'<form method="POST" action="{escape(action, quote=True)}" id="{escape(form_id, quote=True)}" '
        'accept-charset="UTF-8">\n'
        f"{inputs}\n"
        f'  <button type="submit">{escape(BUTTON_LABEL)}</button>\n'
        "</form>"
    )


def render_page(fields: Mapping[str, str], action: str, *, auto_submit: bool = False) -> str:
    """A complete HTML5 page holding the form; with `auto_submit` the browser posts it on load."""
    # the button stays for browsers without JavaScript
    script = f'\n<script>document.getElementById("{FORM_ID}").submit();</script>' if auto_submit else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="fr">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{escape(PAGE_TITLE)}</title>\n"
        "</head>\n"
        "<body>\n"
        f"{render_form(fields, action)}{script}\n"
        "</body>\n"
        "</html>\n"
    )

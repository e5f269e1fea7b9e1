"""The HTML of the payment form: a valid page, fields in order, every value escaped and inert."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forms.form import Customer, PaymentRequest, build_form
from forms.html import BUTTON_LABEL, render_form, render_page
from schemas.settings import ShopConfig
from tests.conftest import SHOP_ID

ACTION = "https://sogecommerce.societegenerale.eu/vads-payment/"
HOSTILE = '"><script>alert(1)</script>'


class PageReader(HTMLParser):
    """What a browser would see: elements opened, the form, its inputs, the script texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.form: dict[str, str | None] = {}
        self.inputs: list[dict[str, str | None]] = []
        self.scripts: list[str] = []
        self.buttons: list[dict[str, str | None]] = []
        self.title = ""
        self.doctype = ""
        self._in: str | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "form":
            self.form = dict(attrs)
        elif tag == "input":
            self.inputs.append(dict(attrs))
        elif tag == "button":
            self.buttons.append(dict(attrs))
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "title":
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def read(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    reader.close()
    return reader


def hostile_form(shop: ShopConfig) -> dict[str, str]:
    request = PaymentRequest(
        shop_id=SHOP_ID,
        amount=2990,
        mode="TEST",
        trans_id="abc123",
        trans_date=datetime(2024, 7, 14, 12, 0, tzinfo=UTC),
        customer=Customer(first_name="Jeanne & Co", address='1 rue "L\'Étoile"'),
        ext_info={"Note": HOSTILE.replace("<", "").replace(">", ""), "Raw": "x&amp;y"},
    )
    return build_form(request, shop).fields


def test_the_page_is_a_complete_html5_document_with_the_form_and_button(shop: ShopConfig) -> None:
    fields = hostile_form(shop)
    page = render_page(fields, ACTION)
    reader = read(page)
    assert page.startswith("<!DOCTYPE html>\n")
    assert reader.doctype == "DOCTYPE html"
    assert reader.tags[:3] == ["html", "head", "meta"]
    assert '<html lang="fr">' in page
    assert '<meta charset="utf-8">' in page
    assert reader.title == "Paiement par Chèque-Vacances Connect"
    assert reader.form["method"] == "POST"
    assert reader.form["action"] == ACTION
    assert [tag["type"] for tag in reader.inputs] == ["hidden"] * len(fields)
    assert [(tag["name"], tag["value"]) for tag in reader.inputs] == list(fields.items())
    assert reader.buttons == [{"type": "submit"}]
    assert BUTTON_LABEL in page
    assert reader.scripts == []


def test_a_value_with_a_script_tag_round_trips_as_text_and_creates_no_element() -> None:
    """`"><script>` in a value (and in the action) is escaped: parsed back it is the same text, no script runs."""
    fields = {"vads_ext_info_Note": HOSTILE, "vads_order_info": "a\"b'c&d"}
    for page in (render_page(fields, ACTION + HOSTILE), render_form(fields, ACTION + HOSTILE)):
        reader = read(page)
        assert "script" not in reader.tags
        assert reader.scripts == []
        assert [(tag["name"], tag["value"]) for tag in reader.inputs] == list(fields.items())
        assert reader.form["action"] == ACTION + HOSTILE


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=6))
def test_any_names_and_values_round_trip_through_the_html(fields: dict[str, str]) -> None:
    """Whatever the text (quotes, ampersands, tags, entities), the parser reads back exactly what was given."""
    clean = {
        name: value
        for name, value in fields.items()
        if "\r" not in name + value and "\x00" not in name + value
    }
    reader = read(render_form(clean, ACTION))
    assert [(tag["name"], tag["value"]) for tag in reader.inputs] == list(clean.items())
    assert "script" not in reader.tags


def test_auto_submit_adds_one_script_that_submits_the_form(shop: ShopConfig) -> None:
    reader = read(render_page(hostile_form(shop), ACTION, auto_submit=True))
    assert reader.scripts == ['document.getElementById("cvco-payment-form").submit();']
    assert reader.form["id"] == "cvco-payment-form"


@pytest.mark.parametrize("auto_submit", [False, True])
def test_the_fragment_is_the_form_alone(shop: ShopConfig, auto_submit: bool) -> None:
    fields = hostile_form(shop)
    fragment = render_form(fields, ACTION)
    assert fragment.startswith("<form ")
    assert fragment.endswith("</form>")
    assert fragment in render_page(fields, ACTION, auto_submit=auto_submit)

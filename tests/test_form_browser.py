"""A real headless Chromium posts the rendered form to a local stand-in for the platform.

The page and the stand-in are aiohttp routes on 127.0.0.1; selenium drives the Debian chromium through
/usr/bin/chromedriver (never selenium-manager), in a thread so the servers keep answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from redis.asyncio import Redis
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.signature import verify_signature
from forms.form import CartLine, Customer, FormOrder, sign_form
from forms.html import render_page
from forms.issue import issue_form
from schemas.settings import Settings, ShopConfig
from tests.browser import chromium
from tests.conftest import SHOP_ID, free_port

LANDED = "stand-in received the form"


@dataclass
class StandIn:
    """The local page server and platform stand-in: what it serves, what it received."""

    base_url: str
    pages: dict[str, str] = field(default_factory=dict)
    received: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def action(self) -> str:
        return f"{self.base_url}/vads-payment/"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    port = free_port()
    server = StandIn(f"http://127.0.0.1:{port}")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=server.pages[request.match_info["name"]], content_type="text/html")

    async def platform(request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8")
        # blank values are fields too: dropping one would break the signature
        server.received.append(parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body)))
        return web.Response(
            text=f"<!DOCTYPE html><title>ok</title><p id=done>{LANDED}</p>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/pay/{name}", page)
    app.router.add_post("/vads-payment/", platform)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server
    await runner.cleanup()


def _wait_for_stand_in(driver: webdriver.Chrome) -> None:
    # the old page's body goes stale while the browser navigates: look again until the answer shows
    wait = WebDriverWait(
        driver, 10, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
    )
    wait.until(lambda d: LANDED in d.find_element(By.TAG_NAME, "body").text)


def click_pay(driver: webdriver.Chrome, url: str) -> int:
    """Open the page, count its script elements, click the pay button, wait for the stand-in's answer."""
    driver.get(url)
    scripts: int = driver.execute_script("return document.scripts.length;")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait_for_stand_in(driver)
    return scripts


def open_and_wait(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    _wait_for_stand_in(driver)


async def test_clicking_pay_posts_exactly_the_signed_fields(
    browser: webdriver.Chrome, stand_in: StandIn, settings: Settings, redis: Redis
) -> None:
    """The browser sends every built field, same name, same value (accents, quotes, +, blanks), nothing else."""
    order = FormOrder(
        shop_id=SHOP_ID,
        amount=4990,
        order_id="CMD-2024_07",
        customer=Customer(first_name="Zoé", last_name='L\'Hôte "Jr"', email="a+b@example.com"),
        products=(
            CartLine(label="Séjour 3 jours & 2 nuits", amount=2495, qty=2, type="TRAVEL", ref="ZJJ5520"),
        ),
        ext_info={"Arrival Date": "22/07/2020", "Nb_Child": "", "Note": "1+1=2; 50% off"},
    )
    issued = await issue_form(redis, settings.model_copy(update={"platform_url": stand_in.action}), order)
    stand_in.pages["issued"] = issued.page()

    scripts = await asyncio.to_thread(click_pay, browser, f"{stand_in.base_url}/pay/issued")

    assert scripts == 0
    assert stand_in.received == [list(issued.fields.items())]
    posted = dict(stand_in.received[0])
    assert verify_signature(posted, posted["signature"], settings.shops[SHOP_ID]) == "valid"


async def test_a_script_tag_in_a_value_is_posted_as_text_and_never_runs(
    browser: webdriver.Chrome, stand_in: StandIn, shop: ShopConfig
) -> None:
    """Even a value the rules would refuse stays inert once rendered: no script element, the text posted back."""
    hostile = '"><script>document.title="pwned"</script><img src=x onerror=alert(1)>'
    fields = sign_form(
        {
            "vads_site_id": SHOP_ID,
            "vads_ctx_mode": "TEST",
            "vads_amount": "2990",
            "vads_ext_info_Note": hostile,
        },
        shop,
    )
    stand_in.pages["hostile"] = render_page(fields, stand_in.action)

    scripts = await asyncio.to_thread(click_pay, browser, f"{stand_in.base_url}/pay/hostile")

    assert scripts == 0
    assert stand_in.received == [list(fields.items())]
    posted = dict(stand_in.received[0])
    assert posted["vads_ext_info_Note"] == hostile
    assert verify_signature(posted, posted["signature"], shop) == "valid"


async def test_the_auto_submit_page_posts_itself_on_load(
    browser: webdriver.Chrome, stand_in: StandIn, settings: Settings, redis: Redis
) -> None:
    issued = await issue_form(
        redis,
        settings.model_copy(update={"platform_url": stand_in.action}),
        FormOrder(shop_id=SHOP_ID, amount=2000, mode="PRODUCTION"),
    )
    stand_in.pages["auto"] = issued.page(auto_submit=True)

    await asyncio.to_thread(open_and_wait, browser, f"{stand_in.base_url}/pay/auto")

    assert stand_in.received == [list(issued.fields.items())]
    production_only = ShopConfig(production_key=settings.shops[SHOP_ID].production_key, modes=("PRODUCTION",))
    assert verify_signature(dict(stand_in.received[0]), issued.form.signature, production_only) == "valid"

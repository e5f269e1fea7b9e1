"""The console in a real headless Chromium, against a real Redis, real workers and real traffic: sign in
(a wrong password refused), the overview's counts, an order searched and its timeline opened, a parked
job replayed and seen processed, another discarded with a reason, a kept refusal retried before and after its shop is configured. Each page is saved as a screenshot in
tests/artifacts/console/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from redis.asyncio import Redis
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from console.app import create_console_app
from schemas.settings import Settings, ShopConfig
from tests.browser import chromium
from tests.conftest import free_port
from tests.notifications import drain, notification, signed
from tests.test_console import PASSWORD, USERS
from tests.test_receiver import receiver
from workers import failed_store

ARTIFACTS = Path(__file__).with_name("artifacts") / "console"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """A console with these settings on a free port; its base URL."""
    runner = web.AppRunner(create_console_app(settings.model_copy(update={"console_users": USERS})))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def console_url(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


def shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def follow(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click a link or a button, then wait until the page it leads to has replaced this one and loaded.

    The page being left is marked, and the wait is for a loaded page without the mark: asked while the
    browser swaps documents, Chromium can answer neither "stale" nor the new page, only a passing error
    about the old node, which the wait asks again past.
    """
    driver.execute_script("document.documentElement.dataset.left = 'yes'")
    element.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda _: driver.execute_script(
            "return document.readyState === 'complete' && !document.documentElement.dataset.left"
        )
    )


def submit(driver: webdriver.Chrome, form_action: str, **inputs: str) -> None:
    """Fill the visible inputs of the first form posting to `form_action`, then press its button."""
    form = driver.find_element(By.CSS_SELECTOR, f'form[action="{form_action}"]')
    for name, value in inputs.items():
        form.find_element(By.NAME, name).send_keys(value)
    follow(driver, form.find_element(By.TAG_NAME, "button"))


def sign_in(driver: webdriver.Chrome, base: str, password: str) -> None:
    driver.get(f"{base}/login")
    submit(driver, "/login", user="ops", password=password)


async def test_an_operators_round_in_the_browser(
    browser: webdriver.Chrome, console_url: str, settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    # real traffic: a payment accepted, two notifications the worker parks (an unknown status), and one
    # for a shop nobody configured, refused and kept
    async with receiver(settings) as client:
        for fields in (
            notification("AUTHORISED"),
            notification("NOT_A_STATUS", trans_id="b00001", uuid="b" * 32),
            notification("NOT_A_STATUS", trans_id="b00002", uuid="c" * 32),
        ):
            answer = await client.post("/ipn", data=urlencode(signed(fields, shop)), headers=FORM)
            assert answer.status == 200
        forgotten = signed(
            {**notification("AUTHORISED", trans_id="f00001"), "vads_site_id": "87654321"}, shop
        )
        assert (await client.post("/ipn", data=urlencode(forgotten), headers=FORM)).status == 403
    await drain(settings)
    parked = [entry.id async for entry in failed_store.iter_failed(redis)]
    assert len(parked) == 2

    def round_trip() -> dict[str, str]:
        seen: dict[str, str] = {}
        sign_in(browser, console_url, "not the password")
        seen["refused"] = text(browser, "error")
        shot(browser, "login-refused")
        sign_in(browser, console_url, PASSWORD)
        seen["parked"], seen["worker"] = text(browser, "parked"), text(browser, "worker")
        shot(browser, "overview")
        browser.get(f"{console_url}/payments")
        submit(browser, "/payments", q="order-42")
        shot(browser, "payments-search")
        follow(browser, browser.find_element(By.CSS_SELECTOR, "#results a"))
        seen["timeline"] = text(browser, "notifications")
        seen["events"] = text(browser, "events")
        shot(browser, "payment-timeline")
        browser.get(f"{console_url}/failed")
        shot(browser, "failed")
        submit(browser, f"/failed/{quote(parked[0])}/replay")
        seen["replayed"] = text(browser, "done")
        submit(browser, f"/failed/{quote(parked[1])}/discard", reason="statut inconnu, vu au Back Office")
        seen["discarded"] = text(browser, "done")
        seen["failed"] = text(browser, "failed")
        shot(browser, "failed-after")
        follow(browser, browser.find_element(By.LINK_TEXT, "Requêtes refusées"))
        seen["rejected"] = text(browser, "rejected")
        shot(browser, "rejected")
        follow(browser, browser.find_element(By.CSS_SELECTOR, "#rejected td button"))
        seen["retried"] = text(browser, "done")
        follow(browser, browser.find_element(By.LINK_TEXT, "Événements"))
        seen["events_page"] = text(browser, "events")
        shot(browser, "events")
        return seen

    seen = await asyncio.to_thread(round_trip)
    assert seen["refused"] == "Nom ou mot de passe incorrect."
    assert (seen["parked"], seen["worker"]) == ("2", "non")
    assert "published" in seen["timeline"] and "payment.accepted" in seen["events"]
    assert seen["replayed"].startswith("Tâche remise en file")
    assert seen["discarded"].startswith("Tâche écartée")
    assert parked[0] in seen["failed"] and parked[1] not in seen["failed"]
    assert "payment.accepted" in seen["events_page"]
    assert "87654321" in seen["rejected"] and seen["retried"].startswith("Toujours refusée")
    assert await drain(settings) == 0  # the replayed job ran (and was parked again: its status is unknown)
    entry = await failed_store.get(redis, parked[0])
    assert entry is not None and entry.parks == 2

    def new_outcome() -> str:
        browser.get(f"{console_url}/failed/{quote(parked[0])}")
        shot(browser, "failed-entry-after-replay")
        return text(browser, "entry")

    assert "garée 2 fois" in await asyncio.to_thread(new_outcome)

    # the forgotten shop configured: the kept refusal passes the receiver's checks and is queued
    fixed = settings.model_copy(update={"shops": {**settings.shops, "87654321": shop}})
    async with serving(fixed) as fixed_url:

        def retry_fixed() -> str:
            sign_in(browser, fixed_url, PASSWORD)
            browser.get(f"{fixed_url}/rejected")
            follow(browser, browser.find_element(By.CSS_SELECTOR, "#rejected td button"))
            shot(browser, "rejected-retried")
            return text(browser, "done")

        assert (await asyncio.to_thread(retry_fixed)).startswith("Requête acceptée")
    assert await drain(settings.model_copy(update={"shops": fixed.shops})) == 0
    assert (await redis.xlen(settings.stream)) == 2  # the first payment's event, and the forgotten shop's
    assert all((ARTIFACTS / f"{name}.png").stat().st_size > 0 for name in ("overview", "payment-timeline"))

"""`POST /forms`: a signed payment form for a merchant back end, behind `CVCO_API_TOKEN`.

JSON in: a `FormOrder` (at least `shop_id`, `amount`, `order_id`, `mode`), plus `auto_submit`.
JSON out: `fields` (every `vads_*` field and `signature`), `action`, `html` (the page), `form_html`
(the `<form>` fragment) and `warnings`. Without a token configured the route does not exist (404).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import ValidationError
from redis.asyncio import Redis

from ingest.body import read_body
from ingest.form import FormOrder
from ingest.form_issue import issue_form
from ingest.form_rules import FormRuleError
from ingest.redis_connection import redis_client
from ingest.rejections import Rejected
from schemas.settings import Settings

FORMS_PATH = "/forms"
FORMS_REDIS = web.AppKey("forms_redis", Redis)
FORMS_SETTINGS = web.AppKey("forms_settings", Settings)


def add_form_routes(app: web.Application, settings: Settings) -> None:
    """Register `POST /forms` and its Redis client, only when `settings.api_token` is set."""
    if settings.api_token is None or not settings.api_token.get_secret_value():
        return
    app[FORMS_SETTINGS] = settings
    app.cleanup_ctx.append(_forms_redis)
    app.router.add_post(FORMS_PATH, create_form)


async def _forms_redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[FORMS_SETTINGS]
    redis = redis_client(settings, socket_timeout_s=settings.redis_timeout_s)
    app[FORMS_REDIS] = redis
    yield
    await redis.aclose()


def _authorized(request: web.Request, settings: Settings) -> bool:
    assert settings.api_token is not None  # the route exists only with a token
    expected = b"Bearer " + settings.api_token.get_secret_value().encode("utf-8")
    # aiohttp decodes header bytes that are not UTF-8 with surrogateescape: encode them back the same way
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, expected)


def _describe(error: ValidationError) -> str:
    """The first invalid member of the request, by its JSON path, and why."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _one_line(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=" ".join(reason.split()))


async def create_form(request: web.Request) -> web.Response:
    """Issue a signed form: 401 without the bearer token, 400 for non-JSON, 422 for a broken rule.

    Every refusal comes before a `vads_trans_id` is claimed: a refused request spends none.
    """
    settings = request.app[FORMS_SETTINGS]
    if not _authorized(request, settings):
        return _one_line(401, "missing or wrong bearer token")
    try:
        body = json.loads(await read_body(request, settings.body_timeout_s))
        # a `\ud800` escape decodes to a lone surrogate, which no form field can carry
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except Rejected as e:  # the body did not arrive in time
        return _one_line(e.status, e.reason)
    except UnicodeEncodeError:
        return _one_line(400, "body is not valid Unicode: it holds a lone surrogate escape")
    except RecursionError:
        return _one_line(400, "body is not usable JSON: nested too deeply")
    except ValueError as e:  # not JSON, not UTF-8, or an integer too long to convert
        return _one_line(400, f"body is not usable JSON: {e}")
    if not isinstance(body, dict):
        return _one_line(400, "body must be a JSON object")
    auto_submit = body.pop("auto_submit", False) is True
    try:
        order = FormOrder.model_validate(body)
        issued = await issue_form(request.app[FORMS_REDIS], settings, order)
    except ValidationError as e:
        return _one_line(422, _describe(e))
    except FormRuleError as e:
        return _one_line(422, str(e))
    answer = issued.as_json()
    answer["html"] = issued.page(auto_submit=auto_submit)
    answer["form_html"] = issued.fragment()
    return web.json_response(answer)

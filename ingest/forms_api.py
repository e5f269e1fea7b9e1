"""`POST /forms`: a signed payment form for a merchant back end, behind `CVCO_API_TOKEN`.

JSON in: a `FormOrder` (at least `shop_id`, `amount`, `order_id`, `mode`), plus `auto_submit`.
JSON out: `fields` (every `vads_*` field and `signature`), `action`, `html` (the page), `form_html`
(the `<form>` fragment) and `warnings`. Without a token configured the route does not exist (404).
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web
from pydantic import ValidationError

from forms.form import FormOrder
from forms.issue import issue_form
from forms.rules import FormRuleError
from ingest.body import read_body
from ingest.rejections import Rejected
from ingest.state import REDIS, SETTINGS
from schemas.settings import Settings

FORMS_PATH = "/forms"


def add_form_routes(app: web.Application, settings: Settings) -> None:
    """Register `POST /forms`, only when `settings.api_token` is set; it uses the receiver's Redis client."""
    if settings.api_token is None or not settings.api_token.get_secret_value():
        return
    app.router.add_post(FORMS_PATH, create_form)


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


def _refused(status: int, reason: str) -> Rejected:
    """A refusal the receiver's middleware answers, its reason on one line."""
    return Rejected(status, "forbidden" if status == 401 else "bad_request", " ".join(reason.split()))


async def create_form(request: web.Request) -> web.Response:
    """Issue a signed form: 401 without the bearer token, 400 for non-JSON, 422 for a broken rule.

    Every refusal comes before a `vads_trans_id` is claimed: a refused request spends none.
    """
    settings = request.app[SETTINGS]
    if not _authorized(request, settings):
        raise _refused(401, "missing or wrong bearer token")
    try:
        # read_body raises Rejected itself when the body does not arrive in time: the middleware answers
        body = json.loads(await read_body(request, settings.body_timeout_s))
        # a `\ud800` escape decodes to a lone surrogate, which no form field can carry
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _refused(400, "body is not valid Unicode: it holds a lone surrogate escape") from None
    except RecursionError:
        raise _refused(400, "body is not usable JSON: nested too deeply") from None
    except ValueError as e:  # not JSON, not UTF-8, or an integer too long to convert
        raise _refused(400, f"body is not usable JSON: {e}") from None
    if not isinstance(body, dict):
        raise _refused(400, "body must be a JSON object")
    auto_submit = body.pop("auto_submit", False) is True
    try:
        order = FormOrder.model_validate(body)
        issued = await issue_form(request.app[REDIS], settings, order)
    except ValidationError as e:
        raise _refused(422, _describe(e)) from None
    except FormRuleError as e:
        raise _refused(422, str(e)) from None
    answer = issued.as_json()
    answer["html"] = issued.page(auto_submit=auto_submit)
    answer["form_html"] = issued.fragment()
    return web.json_response(answer)

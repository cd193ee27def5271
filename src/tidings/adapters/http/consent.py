"""Consent routes: the unsubscribe link of every marketing message, and inbound SMS replies.

- `GET /u/{token}` shows a page asking to confirm; it never unsubscribes by itself, because
  mail scanners and link previews follow links.
- `POST /u/{token}` unsubscribes the token's contact from its channel. This is the page's
  button and RFC 8058 one-click (`List-Unsubscribe=One-Click` in a form body, sent by mail
  clients from the `List-Unsubscribe-Post` header), so it needs no login and no cookie.
- `POST /inbound/sms` (header `api-key`) takes a reply `{"from": "+33...", "text": "STOP"}`
  (also form-encoded, and `to`/`reply`/`Body`... as SMS providers name them); a reply whose
  first word is a stop keyword unsubscribes that number's contact from SMS. A provider event
  whose `msg_status`/`event` says the number unsubscribed does the same.
The first unsubscribe of a channel is recorded in the contact's trace; repeats change nothing.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from tidings.adapters.http.deps import api_key_header, authorise
from tidings.adapters.http.errors import ApiProblemError
from tidings.model.contacts import Channel
from tidings.model.keys import KeyKind
from tidings.ports import Clock, Store
from tidings.service.consent import (
    ConsentTokens,
    UnsubscribeResult,
    contact_for_phone,
    is_stop_request,
    unsubscribe,
)

_NUMBER_FIELDS = ("from", "From", "msisdn", "phone", "sender", "to")
_TEXT_FIELDS = ("text", "Body", "body", "reply", "message", "content")
_UNSUBSCRIBED_STATUSES = {"unsubscribe", "unsubscribed", "unsubscription", "stop", "optout"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto; padding: 0 1em">
<h1>{title}</h1>
{body}
</body></html>
"""


def consent_router(tokens: ConsentTokens, store: Store, clock: Clock) -> APIRouter:
    """The unsubscribe and inbound-SMS routes."""
    router = APIRouter(tags=["consent"])

    @router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe page")
    async def confirm_page(token: str) -> HTMLResponse:
        """A page with one button that unsubscribes (GET itself changes nothing)."""
        found = tokens.verify(token)
        if found is None:
            return _invalid_link()
        what = _channel_words(found.channel)
        form = (
            f"<p>Stop receiving {what} from us?</p>"
            f'<form method="post" action="/u/{html.escape(token, quote=True)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return HTMLResponse(_PAGE.format(title="Unsubscribe", body=form))

    @router.post("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe (one-click)")
    async def one_click(token: str, request: Request) -> HTMLResponse:
        """Unsubscribe the link's contact from its channel (RFC 8058 one-click)."""
        found = tokens.verify(token)
        if found is None:
            return _invalid_link()
        await request.body()  # `List-Unsubscribe=One-Click`; any POST to a valid link counts
        await run_in_threadpool(
            unsubscribe, store, clock, found.contact_id, found.channel, source="link"
        )
        # The same answer whether it was done now or before: no detail for link scanners.
        what = _channel_words(found.channel)
        body = f"<p>You will not receive {what} from us any more.</p>"
        return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body))

    @router.post("/inbound/sms", summary="Inbound SMS reply (STOP)")
    async def inbound_sms(
        request: Request, presented: str | None = Security(api_key_header)
    ) -> JSONResponse:
        """A reply from a phone: STOP (ARRET, UNSUBSCRIBE...) unsubscribes it from SMS."""
        authorise(request, presented, (KeyKind.api,), "api-key")
        fields = await _fields(request)
        number = _first(fields, _NUMBER_FIELDS)
        if number is None:
            raise ApiProblemError(400, "missing_parameter", "from: the sender's number is missing")
        text = _first(fields, _TEXT_FIELDS) or ""
        status = str(fields.get("msg_status") or fields.get("event") or "").lower()
        if not is_stop_request(text) and status not in _UNSUBSCRIBED_STATUSES:
            return JSONResponse({"status": "ignored", "reason": "not a stop request"})
        result = await run_in_threadpool(_stop, store, clock, number)
        return JSONResponse({"status": result.value})

    return router


def _stop(store: Store, clock: Clock, number: str) -> UnsubscribeResult:
    contact = contact_for_phone(store, number)
    if contact is None:
        return UnsubscribeResult.unknown_contact
    return unsubscribe(store, clock, contact.id, Channel.sms, source="sms reply")


async def _fields(request: Request) -> dict[str, Any]:
    """The body as a flat mapping, from JSON or a urlencoded form (providers use both)."""
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    if content_type.startswith("application/x-www-form-urlencoded"):
        # Parsed here: starlette's form parser needs python-multipart, one more dependency.
        pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        return dict(pairs)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblemError(400, "bad_request", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiProblemError(400, "bad_request", "the body must be a JSON object")
    return body


def _first(fields: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = fields.get(name)
        if isinstance(value, str | int) and str(value).strip():
            return str(value).strip()
    return None


def _channel_words(channel: Channel) -> str:
    return "emails" if channel is Channel.email else "text messages"


def _invalid_link() -> HTMLResponse:
    body = "<p>This unsubscribe link is not valid. Please use the link from a recent message.</p>"
    return HTMLResponse(_PAGE.format(title="Link not valid", body=body), status_code=404)

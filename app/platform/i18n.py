"""Korean and English: which language a request speaks, and the words in that language.

The catalogs are gettext ``.po`` files under ``app/locales/<locale>/LC_MESSAGES/``,
compiled in memory when this module is imported (no build step, a fresh clone works).
The language of a request is chosen once by :class:`LocaleMiddleware` and kept in a
context variable, so templates, SSE fragments and Python code all agree without passing
it around.

Code that produces words a person reads marks them with :func:`N_`. The result is a
:class:`Msg`: a ``str`` whose value is the English text (logs, the JSON API and tests see
English), which renders itself in the request's language inside a template.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from functools import cache
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from babel.dates import format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, get_currency_precision
from babel.support import Translations
from litestar.types import ASGIApp, Receive, Scope, Send
from markupsafe import Markup, escape

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
#: the languages the shop speaks, in the order the switch offers them
LOCALES: tuple[str, ...] = ("ko", "en")
#: when neither the account, the cookie nor the browser names one of ours
DEFAULT_LOCALE = "en"
LOCALE_COOKIE = "pizzeria_lang"
#: the signed-in user's choice, copied from the account at sign-in
SESSION_LOCALE = "locale"
LANGUAGE_NAMES = {"ko": "한국어", "en": "English"}

_current: ContextVar[str] = ContextVar("pizzeria_locale", default=DEFAULT_LOCALE)


# -- catalogs -------------------------------------------------------------------------


@cache
def translations(locale: str) -> Translations:
    """The compiled catalog of ``locale`` (fuzzy entries are left out, as msgfmt does)."""
    po = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return Translations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer)


def current_locale() -> str:
    return _current.get()


def set_locale(locale: str) -> None:
    """Speak ``locale`` for the rest of this request (or task)."""
    _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)


def gettext(message: str, locale: str | None = None) -> str:
    return translations(locale or _current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int, locale: str | None = None) -> str:
    return translations(locale or _current.get()).ngettext(singular, plural, n)


class Msg(str):
    """Words for a person: English as a ``str``, the request's language in a template.

    ``params`` fill ``%(name)s`` placeholders; a param that is itself a ``Msg`` is
    translated too.
    """

    msgid: str
    params: Mapping[str, Any]

    def __new__(cls, msgid: str, params: Mapping[str, Any] | None = None) -> Msg:
        params = dict(params or {})
        english = msgid % {k: str(v) for k, v in params.items()} if params else msgid
        made = super().__new__(cls, english)
        made.msgid = msgid
        made.params = params
        return made

    def translated(self, locale: str | None = None) -> str:
        text = gettext(self.msgid, locale)
        if not self.params:
            return text
        return text % {k: translate(v, locale) for k, v in self.params.items()}

    def __html__(self) -> str:
        return str(escape(self.translated()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Msg, (self.msgid, self.params))


def N_(msgid: str, **params: Any) -> str:
    """Mark words for translation (``pybabel extract`` finds ``N_``); typed ``str``
    because a ``Msg`` goes wherever a string goes."""
    return Msg(msgid, params)


class Money:
    """An amount that prints itself in the language of the moment (a message param)."""

    def __init__(self, amount: int, currency: str) -> None:
        self.amount, self.currency = int(amount), currency

    def __str__(self) -> str:
        return money(self.amount, self.currency)


class Verbatim(str):
    """A param to show as it is (a name), never looked up in the catalog."""


def translate(value: Any, locale: str | None = None) -> str:
    """A ``Msg`` in the request's language; a plain string through the catalog (so data
    such as the demo menu or the seeded refund reasons reads in Korean too, while words an
    admin typed stay as typed); anything else as ``str``."""
    if isinstance(value, Msg):
        return value.translated(locale)
    if isinstance(value, Verbatim):
        return str(value)
    if isinstance(value, Money):
        return money(value.amount, value.currency, locale)
    if isinstance(value, str):
        return gettext(value, locale) if value else value
    return "" if value is None else str(value)


# -- money and time -------------------------------------------------------------------


def money(amount: int, currency: str, locale: str | None = None) -> str:
    """``amount`` in minor units of ``currency`` (won have none): ₩12,000, €9.50, $3.00."""
    digits = get_currency_precision(currency)
    value = Decimal(int(amount)).scaleb(-digits)
    return format_currency(value, currency, locale=locale or _current.get())


def plain_amount(amount: int, currency: str) -> str:
    """The amount as a bare number with the currency's decimals (for CSV): 12000, 9.50."""
    digits = get_currency_precision(currency)
    return f"{Decimal(int(amount)).scaleb(-digits):.{digits}f}"


#: named formats per language; the shop's time zone is applied to every one
TIME_FORMATS: dict[str, dict[str, str]] = {
    "en": {
        "time": "HH:mm:ss",
        "short": "d MMM, HH:mm",
        "datetime": "d MMM y, HH:mm",
        "full": "d MMM y, HH:mm:ss",
    },
    "ko": {
        "time": "HH:mm:ss",
        "short": "M월 d일 HH:mm",
        "datetime": "y년 M월 d일 HH:mm",
        "full": "y년 M월 d일 HH:mm:ss",
    },
}


def shop_time(value: datetime, zone: str, style: str = "time", locale: str | None = None) -> str:
    """A moment as a person in the shop reads it: the shop's zone, the request's language."""
    lang = locale or _current.get()
    if "%" in style:  # a strftime pattern: digits only read the same in both languages
        return value.astimezone(_zone(zone)).strftime(style)
    pattern = TIME_FORMATS.get(lang, TIME_FORMATS["en"]).get(style, style)
    if pattern == "HH:mm:ss":
        return format_time(value, pattern, tzinfo=_zone(zone), locale=lang)
    return format_datetime(value, pattern, tzinfo=_zone(zone), locale=lang)


@cache
def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


# -- choosing the language ------------------------------------------------------------


def from_accept_language(header: str | None) -> str | None:
    """The first of our languages the browser asks for, by its q-values (ko-KR → ko)."""
    if not header:
        return None
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        wanted.append((-quality, position, tag.strip().lower()))
    for quality, _, tag in sorted(wanted):
        if quality >= 0:  # q=0 means "not this one"
            continue
        primary = tag.split("-")[0]
        if primary in LOCALES:
            return primary
    return None


def choose(account_choice: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The signed-in user's choice, else the switch's cookie, else the browser's wish."""
    for candidate in (account_choice, cookie):
        if candidate in LOCALES:
            return candidate
    return from_accept_language(accept_language) or DEFAULT_LOCALE


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


class LocaleMiddleware:
    """Sets the request's language before any handler or template runs (after the session
    middleware, so the signed-in user's choice is known)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            set_locale(locale_of(scope))
        await self.app(scope, receive, send)


def switched_to(scope: Scope) -> str | None:
    """The language this browser picked with the header's switch (its cookie), if any: an
    explicit choice, unlike the browser's ``Accept-Language`` or the default."""
    chosen = _cookie(scope, LOCALE_COOKIE)
    return chosen if chosen in LOCALES else None


def locale_of(scope: Scope) -> str:
    """The language of this request (also for error pages, which middleware never sees:
    there the session is not loaded, so the cookie and the browser decide)."""
    session = scope.get("session")
    account = session.get(SESSION_LOCALE) if isinstance(session, dict) else None
    return choose(account, _cookie(scope, LOCALE_COOKIE), _header(scope, b"accept-language"))


# -- templates ------------------------------------------------------------------------


def install(environment: Any, shop_zone: str) -> None:
    """Jinja2: ``{% trans %}``/``_()`` through our catalogs, and the money/time filters."""
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(gettext, ngettext, newstyle=True)
    environment.filters["tr"] = lambda value: Markup(escape(translate(value)))
    environment.filters["shop_time"] = lambda value, style="%H:%M": shop_time(
        value, shop_zone, style
    )
    environment.globals["current_locale"] = current_locale
    environment.globals["money_text"] = money
    environment.globals["LOCALES"] = LOCALES
    environment.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES

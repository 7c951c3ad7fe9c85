"""The catalogs are complete: every word a person reads is wrapped for translation, is in
both catalogs, and has a real Korean translation.

These tests are the safety net for templates and messages written by anyone: a new
English sentence that is not wrapped, not extracted, or not translated fails here.
See README "Korean and English" for how to update the catalogs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates"
LOCALES = ROOT / "app" / "locales"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")


def _extracted() -> dict[str, str]:
    """msgid -> where, exactly as ``pybabel extract -F babel.cfg -k N_`` finds them."""
    found: dict[str, str] = {}
    method_map = [("app/**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, keywords=keywords
    ):
        msgid = message[0] if isinstance(message, tuple) else message  # plurals: by singular
        if msgid:
            found.setdefault(msgid, filename)
    return found


def _catalog(locale: str):  # type: ignore[no-untyped-def]
    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=locale)


EXTRACTED = _extracted()


@pytest.mark.parametrize("locale", ["ko", "en"])
def test_every_wrapped_string_is_in_the_catalog(locale: str) -> None:
    catalog = _catalog(locale)
    missing = {msgid: where for msgid, where in EXTRACTED.items() if msgid not in catalog}
    assert not missing, f"not in the {locale} catalog (run the catalog update in README): {missing}"


def test_every_korean_translation_is_written_and_not_fuzzy() -> None:
    catalog = _catalog("ko")
    untranslated = [
        m.id
        for m in catalog
        if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else [m.string]))
    ]
    assert not untranslated, f"Korean translation missing or fuzzy: {untranslated}"


def test_translations_use_the_same_placeholders_as_the_english() -> None:
    wrong = []
    for message in _catalog("ko"):
        if message.id and message.string:
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(PLACEHOLDER.findall(ids[0]))
            if any(set(PLACEHOLDER.findall(s)) != wanted for s in strings):
                wrong.append(message.id)
    assert not wrong, f"placeholders differ from the English: {wrong}"


def test_the_korean_catalog_is_korean() -> None:
    """Guards against copying the English into msgstr to silence the test above."""
    hangul = re.compile(r"[\uac00-\ud7a3]")
    # a few msgids are the same in both languages (numbers, units)
    same_ok = {"%(seconds)s s"}
    copied = [
        m.id
        for m in _catalog("ko")
        if m.id
        and m.id not in same_ok
        and isinstance(m.string, str)
        and not hangul.search(m.string)
    ]
    assert not copied, f"not written in Korean: {copied}"


# -- nothing a person reads escapes the catalogs --------------------------------------

#: HTML attributes whose text a person reads or hears
READ_ATTRIBUTES = re.compile(
    r"""\b(?:title|alt|placeholder|aria-label|aria-description)\s*=\s*"([^"]*)\"""", re.I
)
TAG = re.compile(r"<[^>]*>")
WORD = re.compile(r"[A-Za-z]{2,}")
#: words that are the same in every language (the shop's name comes from settings)
UNTRANSLATED_OK = {"CSV", "ms"}


def _template_texts() -> Iterator[tuple[str, str]]:
    """(template, text) for every piece of literal text outside Jinja expressions."""
    environment = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    for path in sorted(TEMPLATES.rglob("*.html")):
        source = path.read_text(encoding="utf-8")
        name = str(path.relative_to(TEMPLATES))
        data = "".join(value for _line, kind, value in environment.lex(source) if kind == "data")
        for attribute in READ_ATTRIBUTES.findall(data):
            yield name, attribute
        for text in TAG.sub(" ", data).split("  "):
            if text.strip():
                yield name, text.strip()


def test_templates_have_no_unwrapped_words() -> None:
    """Every word in a template is inside ``{{ _("...") }}`` (or comes from data)."""
    loose = [
        (name, text)
        for name, text in _template_texts()
        if any(word not in UNTRANSLATED_OK for word in WORD.findall(text))
    ]
    assert not loose, f"wrap these in {{{{ _('...') }}}} and update the catalogs: {loose}"


#: calls whose message argument a person reads (pages show ``detail`` and field errors)
MESSAGE_CALLS = {
    "FieldError": 1,
    "single": 1,  # InvalidInput.single(field, message)
    "NotFound": 0,
    "Conflict": 0,
    "NotAuthenticated": 0,
    "Forbidden": 0,
    "Unavailable": 0,
    "TooManyRequests": 0,
    "IllegalTransition": 0,
    "DomainError": 0,
}


def _loose_messages(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        position = MESSAGE_CALLS.get(name or "")
        if position is None or len(node.args) <= position:
            continue
        argument = node.args[position]
        if isinstance(argument, ast.JoinedStr) or (
            isinstance(argument, ast.Constant) and isinstance(argument.value, str)
        ):
            yield f"{path.relative_to(ROOT)}:{node.lineno}"


def test_python_messages_for_people_are_marked_for_translation() -> None:
    """Errors and field messages are ``N_("...")``: English in the API, translated on
    pages. (The sandbox partners are someone else's systems and stay English.)"""
    loose = [
        where
        for path in sorted((ROOT / "app").rglob("*.py"))
        if "sandbox" not in path.parts
        for where in _loose_messages(path)
    ]
    assert not loose, f"wrap these messages in N_(...): {loose}"

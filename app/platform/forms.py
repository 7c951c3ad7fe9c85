"""Showing an HTML form again after a use case refused it, the same way on every page.

A refused form comes back with each message next to the field it is about, a message
about the whole form above it, everything the person typed (never a secret such as a
password or a card number), the refusal's status code and, when the refusal says when to
try again, ``Retry-After``. Templates read ``form`` (what was typed) and ``errors`` (a
message by field name, ``"form"`` for the whole form).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from litestar import Request
from litestar.response import Template

from app.platform.errors import DomainError, InvalidInput, Unavailable
from app.platform.web import page

#: the key of a message about the whole form rather than one of its fields
WHOLE_FORM = "form"


def form_errors(
    refusal: DomainError,
    fields: Collection[str],
    busy: Callable[[int], str] | None = None,
) -> dict[str, str]:
    """A message by form field for ``refusal``.

    Services name fields as the form does (``card_number``); an error about one item of a
    list (``items[0].qty``) goes next to the list (``items``), and one about something the
    form has no field for (the idempotency key, a hidden input) goes above the form. When
    a partner is unavailable, ``busy(retry_after)`` says so in the page's own words.
    """
    if not isinstance(refusal, InvalidInput):
        if busy is not None and isinstance(refusal, Unavailable):
            return {WHOLE_FORM: busy(refusal.retry_after)}
        return {WHOLE_FORM: refusal.detail}
    errors: dict[str, str] = {}
    for error in refusal.errors:
        name = error.field.split("[", 1)[0].split(".", 1)[0]
        errors.setdefault(name if name in fields else WHOLE_FORM, error.message)
    return errors


def scoped_errors(scope: object, refusal: DomainError, fields: Collection[str]) -> dict[str, str]:
    """``form_errors`` for one of several forms on a page (a partner's, a dead letter's):
    each message keyed ``{scope}.{field}``, so it shows next to that form's field only."""
    return {f"{scope}.{name}": text for name, text in form_errors(refusal, fields).items()}


def form_again(
    request: Request[Any, Any, Any],
    template: str,
    form: Mapping[str, str],
    errors: DomainError | Mapping[str, str],
    *,
    status_code: int | None = None,
    fields: Collection[str] = (),
    secret: Collection[str] = (),
    busy: Callable[[int], str] | None = None,
    **context: Any,
) -> Template:
    """``template`` again with what was typed in ``form`` (minus the ``secret`` fields)
    and ``errors``: a refusal (its messages by field, its status and ``Retry-After``) or
    messages the page wrote itself (422 unless ``status_code`` says otherwise).

    The form's fields are the keys of ``form`` plus ``fields`` (a list the form shows as
    one block, such as the basket's ``items``).
    """
    headers: dict[str, str] | None = None
    if isinstance(errors, DomainError):
        retry_after = getattr(errors, "retry_after", None)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
        status_code = status_code or errors.status_code
        errors = form_errors(errors, {*form, *fields}, busy)
    return page(
        request,
        template,
        status_code=status_code or 422,
        headers=headers,
        form={k: v for k, v in form.items() if k not in secret},
        errors=dict(errors),
        **context,
    )

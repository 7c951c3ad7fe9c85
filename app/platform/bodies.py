"""Request bodies the API accepts: small, shallow and exactly typed.

- Size: Litestar refuses a body over the route's ``request_max_body_size`` with 413
  (``MAX_BODY`` by default, ``SMALL_BODY`` for sign-in, sign-up and webhooks).
- Depth: JSON nested deeper than ``MAX_DEPTH`` is a 422 before anything parses it (the
  decoder would otherwise hit Python's recursion limit: a 500).
- Types: Litestar converts bodies leniently (``"qty": "1"`` would become 1); a JSON body
  for a typed ``data`` parameter is decoded strictly first, so a wrong type is a 422
  naming the field.
- Encoding: a body that is not UTF-8 is a 400 (the decoder would raise
  ``UnicodeDecodeError``: a 500).

Litestar reads the body of a route whose ``data`` is not a form as JSON whatever the
``Content-Type`` says (``text/plain``, none at all), so these checks go by the route, not
by the header: a body the route will parse as JSON is checked as JSON.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from app.platform.errors import DomainError, FieldError, InvalidInput
from app.platform.i18n import N_

MAX_BODY = 64 * 1024
SMALL_BODY = 8 * 1024
MAX_DEPTH = 32
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"contains unknown field `([^`]+)`")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON ``body`` nests arrays/objects more than ``limit`` deep (strings are
    skipped, so brackets inside text do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be that deep: skip the scan
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _field(message: str) -> FieldError:
    """``Expected `int`, got `str` - at `$.items[0].qty``` → field ``items[0].qty``."""
    found = _PATH.search(message)
    field = found.group(1) if found else ""
    named = _MISSING.search(message) or _UNKNOWN.search(message)
    if named:  # ``Object missing required field `items` - at `$.order``` names the field
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    return FieldError(field or "body", _PATH.sub("", message))


def _json_data(request: Request[Any, Any, Any]) -> FieldDefinition | None:
    """The route's ``data`` parameter when Litestar will parse the body as JSON (it is
    not a form or MessagePack), else None."""
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return None
    kwarg = field.kwarg_definition
    if isinstance(kwarg, BodyKwarg) and kwarg.media_type != RequestEncodingType.JSON:
        return None
    return field


async def check_json_body(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook for JSON routes (runs before Litestar parses the body)."""
    if request.method not in _UNSAFE:
        return None
    field = _json_data(request)
    if field is None and request.content_type[0] != "application/json":
        return None  # a form, or a route that reads no body
    body = await request.body()
    if not body:
        if field is not None and not field.is_optional and not field.has_default:
            raise InvalidInput.single("body", N_("A JSON body is required."))
        return None
    if too_deep(body):
        raise InvalidInput.single(
            "body", N_("JSON may nest at most %(n)s levels deep.", n=MAX_DEPTH)
        )
    try:
        # what Litestar's untyped decode would choke on, anywhere in the body (the typed
        # decode below skips the bytes of fields the Struct does not declare)
        if not body.isascii():
            body.decode()
        if field is None or not field.is_subclass_of(msgspec.Struct):
            return None
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except UnicodeDecodeError as exc:
        raise DomainError(N_("The body is not valid UTF-8 text.")) from exc
    except msgspec.ValidationError as exc:
        raise InvalidInput([_field(str(exc))]) from exc
    except msgspec.DecodeError:
        return None  # not JSON at all: Litestar answers that one itself
    return None

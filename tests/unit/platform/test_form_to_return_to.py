"""Which page a "please try again" error leads back to: the form's own page, only after a
form was sent, only when trying again makes sense, and never another site."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request

from app.platform.web import form_to_return_to, local_path


def _request(method: str, referer: str | None) -> Request[Any, Any, Any]:
    headers = [(b"host", b"shop.test")]
    if referer is not None:
        headers.append((b"referer", referer.encode()))
    scope: Any = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "server": ("shop.test", 80),
        "path": "/checkout",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("method", "status", "referer", "back"),
    [
        ("POST", 503, "http://shop.test/checkout", "/checkout"),
        ("POST", 429, "http://shop.test/orders/7/refund?lang=ko", "/orders/7/refund?lang=ko"),
        ("POST", 403, "http://shop.test/checkout", None),  # not a "try again"
        ("POST", 422, "http://shop.test/checkout", None),
        ("GET", 503, "http://shop.test/checkout", None),  # no form was sent
        ("POST", 503, None, None),
        ("POST", 503, "http://evil.test/checkout", None),
        ("POST", 503, "https://shop.test/checkout", None),
        ("POST", 503, "http://shop.test//evil.test/x", None),
        ("POST", 503, "not a url", None),
    ],
)
def test_the_form_to_return_to(
    method: str, status: int, referer: str | None, back: str | None
) -> None:
    assert form_to_return_to(_request(method, referer), status) == back


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("/orders", "/orders"),
        ("/orders?page=2", "/orders?page=2"),
        ("//evil.test", None),
        ("/\\evil.test", None),
        ("https://evil.test/", None),
        ("/a b", None),
        ("", None),
        (None, None),
    ],
)
def test_only_paths_on_this_site_are_local(target: str | None, local: str | None) -> None:
    assert local_path(target) == local

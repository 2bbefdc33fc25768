"""What a browser sends the web app (/app/) in the HTTP-level tests: its forms and cookies."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from tests.helpers.fleet_accounts import PASSWORD

CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a page's forms."""
    found = CSRF_FIELD.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def origin_of(browser: TestClient) -> dict[str, str]:
    """The Origin header a browser sends with a form of this site."""
    return {"Origin": str(browser.base_url).rstrip("/")}


def post_form(
    browser: TestClient, path: str, fields: dict[str, str], *, from_page: str
) -> httpx.Response:
    """Submit a form as a browser does: the page's CSRF token, our Origin, no redirect followed."""
    token = csrf_of(browser.get(from_page))
    return browser.post(
        path,
        data={"csrf": token, **fields},
        headers=origin_of(browser),
        follow_redirects=False,
    )


def browser_for(client: TestClient, base_url: str = "http://testserver") -> TestClient:
    """Another browser (its own cookie jar) on the same app."""
    return TestClient(client.app, base_url=base_url)


def sign_up(browser: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    answer = post_form(
        browser, "/app/signup", {"email": email, "password": password}, from_page="/app/signup"
    )
    assert answer.status_code == 303, answer.text
    return answer

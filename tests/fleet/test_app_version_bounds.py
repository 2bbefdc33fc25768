"""X-App-Version is bounded (issue 9, point 7): a version is 4 components of up to 6 digits.

Before, 4,301 digits were a 500 (Python's int() limit) and 33+ characters a 500 on PostgreSQL
(the audit's String(32)).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers.fleet_accounts import login
from tests.helpers.fleet_answers import assert_error_shape
from tests.helpers.fleet_records import add_charger


def test_an_app_version_of_4301_digits_is_426_not_500(client: TestClient) -> None:
    """Python's int() refuses over 4,300 digits: the header was a 500 before."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    response = client.get(
        f"/chargers/{charger.serial}", headers={**owner, "X-App-Version": "9" * 4301}
    )
    assert_error_shape(response, 426, "update_the_app")
    assert "not a version like 2.3.0" in response.json()["detail"]
    assert len(response.text) < 300  # the header is not quoted back


@pytest.mark.parametrize("path", ["/chargers/{serial}", "/chargers/{serial}/pin?epoch=0"])
def test_an_app_version_over_32_characters_is_426_not_500(client: TestClient, path: str) -> None:
    """33+ characters overflowed the audit's String(32) on PostgreSQL (a 500 after the check)."""
    owner = login(client, "owner@example.com")
    charger = add_charger(client, owner)
    url = path.format(serial=charger.serial)
    too_long = client.get(url, headers={**owner, "X-App-Version": "2." + "3" * 40})
    assert_error_shape(too_long, 426, "update_the_app")
    # The longest version there is (4 components of 6 digits) is served and audited whole.
    longest = "999999.999999.999999.999999"
    served = client.get(url, headers={**owner, "X-App-Version": longest})
    assert served.status_code == 200, served.text
    reveals = client.get(f"/chargers/{charger.serial}/reveals", headers=owner).json()
    assert reveals[0]["app_version"] == longest

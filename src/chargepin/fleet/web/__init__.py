"""The app as web pages served by the fleet service under /app/ (docs/APP.md).

One more client of the fleet's service functions (accounts, claims, chargers, the CSMS's
registry and events): the pages validate, call them and render; no rule lives here but the
web's own (cookie sessions, CSRF, security headers). `install(app)` mounts it.
"""

from chargepin.fleet.web.pages import LARGER_BODIES, install, plain_page

__all__ = ["LARGER_BODIES", "install", "plain_page"]

"""`chargepin app`: the web app run beside a radio, like a phone (docs/APP.md, "Radio mode").

It holds no database: the fleet's own pages are forwarded to the fleet (`forward.py`), and the
Bluetooth screens (`pages.py`) drive one Bumble phone (`radio.py`) through the phone library,
talking to the fleet's JSON API as the signed-in user.
"""

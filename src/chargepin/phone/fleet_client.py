"""The app's client of the fleet service: login, commissioning, Charger Info, PINs, tickets.

Thin over HTTP (httpx): every non-2xx answer becomes a `FleetRefused` carrying the service's
stable code and its reason, so the app can show what to do ("update the app", "ask the owner").
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chargepin import __version__
from chargepin.core.pin import Pin
from chargepin.core.policy import PinMode, PinPolicy
from chargepin.core.presence import PresenceProof
from chargepin.core.protocol import OpenInfo
from chargepin.phone.errors import PhoneError

RECENT_COMMANDS = 20
"""How many of a charger's newest commands `enabling` looks through."""
APP_VERSION = "2.3.0"  # what this client reports in X-App-Version (the service's minimum is 2.0)


class FleetRefused(PhoneError):
    """The fleet service said no; `status` and `code` say why, the message what to do."""

    exit_code = 14

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"fleet service: {detail} ({status} {code})")
        self.status = status
        self.code = code
        self.detail = detail


class FleetUnreachable(PhoneError):
    """The fleet service did not answer."""

    exit_code = 15


@dataclass(frozen=True)
class ChargerInfo:
    """Charger Info as the app shows it."""

    serial: str
    model: str
    role: str
    pin_class: str
    pin_enabled: bool
    epoch: int
    pin: Pin | None
    message: str
    policy: PinPolicy | None = None
    """The PIN class as the fleet decided it (core.policy), when the fleet said it whole."""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ChargerInfo:
        pin = body.get("pin")
        return cls(
            serial=str(body["serial"]),
            model=str(body.get("model", "")),
            role=str(body.get("role", "")),
            pin_class=str(body.get("pin_class", "")),
            pin_enabled=bool(body.get("pin_enabled", False)),
            epoch=int(body.get("epoch", 0)),
            pin=Pin(str(pin)) if pin else None,
            message=str(body.get("message", "")),
            policy=_policy(body),
        )


def _policy(body: dict[str, Any]) -> PinPolicy | None:
    """The fleet's PinPolicy from Charger Info, None from a fleet that does not say it whole."""
    try:
        return PinPolicy(
            mode=PinMode(str(body["pin_class"])),
            changeable=bool(body["pin_changeable"]),
            can_disable=bool(body["pin_can_disable"]),
            reason=str(body["pin_class_reason"]),
        )
    except (KeyError, ValueError):
        return None


class FleetClient:
    """One logged-in (or not yet) app talking to one fleet service."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        app_version: str = APP_VERSION,
    ) -> None:
        self.base_url = base_url
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=10.0,
            headers={"X-App-Version": app_version, "User-Agent": f"chargepin/{__version__}"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise FleetUnreachable(
                f"fleet service at {self.base_url} did not answer ({error}); check the address "
                "and your connection"
            ) from error
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = str(body.get("error", "")), str(body.get("detail", ""))
            except (ValueError, AttributeError):
                code, detail = "", response.text[:200]
            raise FleetRefused(response.status_code, code, detail or response.reason_phrase)
        return response.json() if response.content else None

    # ---------------------------------------------------------------- accounts

    async def register(self, email: str, password: str) -> None:
        await self._call("POST", "/register", json={"email": email, "password": password})

    async def login(self, email: str, password: str) -> str:
        body = await self._call("POST", "/login", json={"email": email, "password": password})
        self.token = str(body["token"])
        return self.token

    async def logout(self) -> None:
        """End this login on the fleet: the token stops working at once."""
        await self._call("POST", "/logout")
        self.token = None

    async def end_all_sessions(self) -> int:
        """End every login of this account, this one included (a lost phone); how many."""
        body = await self._call("POST", "/sessions/revoke-all")
        self.token = None
        return int(body["sessions_ended"])

    async def change_password(self, old: str, new: str) -> int:
        """A new password; every other login of the account ends. How many ended."""
        body = await self._call(
            "POST", "/me/password", json={"old_password": old, "new_password": new}
        )
        return int(body["sessions_ended"])

    # ---------------------------------------------------------------- chargers

    async def claim(self, sticker_payload: str) -> ChargerInfo:
        """Commission a charger by its sticker: the first valid claim makes us the owner."""
        return ChargerInfo.from_json(
            await self._call("POST", "/chargers/claim", json={"payload": sticker_payload})
        )

    async def chargers(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/chargers"))

    async def charger_info(self, serial: str) -> ChargerInfo:
        return ChargerInfo.from_json(await self._call("GET", f"/chargers/{serial}"))

    async def pin_of_epoch(self, serial: str, epoch: int) -> Pin:
        """The PIN the charger uses in `epoch` (troubleshooting after a wrong PIN)."""
        body = await self._call("GET", f"/chargers/{serial}/pin", params={"epoch": epoch})
        return Pin(str(body["pin"]))

    async def presence_nonce(self, serial: str) -> bytes:
        """A fresh single-use nonce for a device to prove it is charger `serial`."""
        body = await self._call("POST", f"/chargers/{serial}/presence/nonces")
        return bytes.fromhex(str(body["nonce"]))

    async def pin_for_presence(
        self, serial: str, nonce: bytes, proof: PresenceProof, address: str
    ) -> Pin:
        """The PIN to type into the device that answered `nonce` with `proof` on the link
        where this phone is `address`; FleetRefused (presence_invalid) for an impostor."""
        body = await self._call(
            "POST",
            f"/chargers/{serial}/presence/pin",
            json={"nonce": nonce.hex(), "proof": proof.encode().hex(), "address": address},
        )
        return Pin(str(body["pin"]))

    async def ticket(
        self, serial: str, challenge: bytes, action: str, args: dict[str, str] | None = None
    ) -> bytes:
        body = await self._call(
            "POST",
            f"/chargers/{serial}/tickets",
            json={"challenge": challenge.hex(), "action": action, "args": args or {}},
        )
        return bytes.fromhex(str(body["ticket"]))

    async def receipt(self, serial: str, receipt: bytes) -> dict[str, Any]:
        return dict(
            await self._call(
                "POST", f"/chargers/{serial}/receipts", json={"receipt": receipt.hex()}
            )
        )

    async def reconcile(self, info: OpenInfo) -> dict[str, Any]:
        """Relay the charger's open info, as read: the fleet believes only what it attests."""
        return dict(
            await self._call(
                "POST",
                f"/chargers/{info.serial}/reconcile",
                json={
                    "epoch": info.epoch,
                    "fingerprint": info.fingerprint.hex(),
                    "pin_enabled": info.pin_enabled,
                    "attestation": info.attestation.hex(),
                    "generation": info.generation,
                },
            )
        )

    async def relay_bond(self, serial: str, statement: bytes) -> dict[str, Any]:
        """Relay the charger's bond statement: the fleet lists the address as this account's
        phone (what the owner removes when revoking us) only when the charger vouched for it."""
        return dict(
            await self._call(
                "POST", f"/chargers/{serial}/phones", json={"statement": statement.hex()}
            )
        )

    async def pages(self, path: str, page_size: int = 100) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of a keyset-paged list (the audit, the security events), newest first:
        each page asks for the entries below the last id seen, so entries added meanwhile
        never shift or repeat one, and nothing old is out of reach (docs/FLEET.md, "Paging")."""
        before: int | None = None
        while True:
            params = {"limit": page_size, **({} if before is None else {"before": before})}
            page = list(await self._call("GET", path, params=params))
            if page:
                yield page
            if len(page) < page_size:
                return
            before = int(page[-1]["id"])

    async def audit(self, serial: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every PIN reveal of the charger, newest first (owner only), page by page."""
        return [
            e async for page in self.pages(f"/chargers/{serial}/reveals", page_size) for e in page
        ]

    async def events(self, serial: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every security event phones reported for the charger, newest first (owner only)."""
        return [
            e async for page in self.pages(f"/chargers/{serial}/events", page_size) for e in page
        ]

    async def security_events(self, serial: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every security event the charger sent over OCPP, newest first, in words (owner only)."""
        path = f"/chargers/{serial}/security-events"
        return [e async for page in self.pages(path, page_size) for e in page]

    async def commands(self, serial: str, page_size: int = 100) -> list[dict[str, Any]]:
        """The owner actions sent to the charger over OCPP and their state, newest first."""
        path = f"/chargers/{serial}/commands"
        return [c async for page in self.pages(path, page_size) for c in page]

    async def enabling(self, serial: str) -> bool:
        """Whether an enable_pin the owner asked for is still on its way to the charger over
        OCPP (waiting or sent), among its newest commands (owner only)."""
        path = f"/chargers/{serial}/commands"
        newest = list(await self._call("GET", path, params={"limit": RECENT_COMMANDS}))
        return any(
            c.get("action") == "enable_pin" and c.get("state") in ("waiting", "sent")
            for c in newest
        )

    async def connection(self, serial: str) -> dict[str, Any]:
        """Whether the charger is connected to the fleet over OCPP, and when it was last heard."""
        return dict(await self._call("GET", f"/chargers/{serial}/connection"))

    async def report(self, serial: str, kind: str, detail: str) -> None:
        await self._call(
            "POST", f"/chargers/{serial}/events", json={"kind": kind, "detail": detail}
        )

    # ---------------------------------------------------------------- people

    async def invite(self, serial: str, email: str) -> str:
        body = await self._call("POST", f"/chargers/{serial}/invitations", json={"email": email})
        return str(body["code"])

    async def invitations(self, serial: str) -> list[dict[str, Any]]:
        """The charger's open invitations (owner only)."""
        return list(await self._call("GET", f"/chargers/{serial}/invitations"))

    async def withdraw(self, serial: str, invitation_id: int) -> dict[str, Any]:
        """Withdraw an invitation not yet accepted: its code stops working."""
        return dict(await self._call("DELETE", f"/chargers/{serial}/invitations/{invitation_id}"))

    async def members(self, serial: str) -> list[dict[str, Any]]:
        return list(await self._call("GET", f"/chargers/{serial}/members"))

    async def revoke(self, serial: str, user_id: int, *, rekey: bool = False) -> dict[str, Any]:
        """Remove an invited user; the answer lists their phones to remove from the charger.

        The fleet also queues their removal for the charger over OCPP, and with `rekey` the
        re-key (delivered at once when the charger is online, else when it connects)."""
        query = "?rekey=true" if rekey else ""
        return dict(await self._call("DELETE", f"/chargers/{serial}/members/{user_id}{query}"))

    async def accept(self, code: str) -> dict[str, Any]:
        return dict(await self._call("POST", "/invitations/accept", json={"code": code}))


@dataclass(frozen=True)
class Login:
    """What `chargepin phone login` remembers: which fleet service, which token."""

    fleet_url: str
    token: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"fleet_url": self.fleet_url, "token": self.token}, handle)

    @classmethod
    def load(cls, path: Path) -> Login:
        try:
            data = json.loads(path.read_text())
            return cls(str(data["fleet_url"]), str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PhoneError(
                f"no usable login in {path} ({error}); run `chargepin phone login` first"
            ) from error

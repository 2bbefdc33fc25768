"""Provisioning bundle files (`chargepin charger init --bundle FILE`): valid, altered, shaped
and any bytes."""

from __future__ import annotations

import datetime
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from chargepin.charger.service import provision_charger, read_bundle
from chargepin.core.errors import ChargepinError
from chargepin.core.limits import SERIAL_RE
from chargepin.core.policy import FirmwareVersion
from chargepin.core.provisioning import ProvisioningBundle
from chargepin.lab.strategies.json_texts import JSON_VALUES, json_texts
from chargepin.lab.strategies.mutations import mutations
from chargepin.lab.strategies.oracle import outcome
from chargepin.lab.strategies.tickets import SECRETS

BUNDLES = st.builds(
    ProvisioningBundle,
    serial=st.from_regex(SERIAL_RE, fullmatch=True),
    model=st.sampled_from(["Pulsar Max", "Pulsar Plus", "Commander 2"]),
    firmware=st.sampled_from(["6.11.2", "6.7.17", "6.8.0", "7.0"]).map(FirmwareVersion.parse),
    produced=st.dates(datetime.date(2020, 1, 1), datetime.date(2030, 12, 31)),
    secret=SECRETS,
)
_BUNDLE_KEYS = ("format", "serial", "model", "firmware", "produced", "secret")


@dataclass(frozen=True)
class BundleCase:
    """The bytes of a provisioning bundle file and, when unaltered, the bundle they hold."""

    data: bytes
    bundle: ProvisioningBundle | None = None


@st.composite
def _shaped_bundles(draw: st.DrawFn) -> bytes:
    """A bundle object with each field right, wrong or missing."""
    right = draw(BUNDLES).to_dict()
    fields: dict[str, Any] = {}
    for name in _BUNDLE_KEYS:
        kind = draw(st.sampled_from(["right", "right", "wrong", "missing"]), label=name)
        if kind == "right":
            fields[name] = right[name]
        elif kind == "wrong":
            fields[name] = draw(st.one_of(JSON_VALUES, st.text(max_size=70)), label=name)
    return json.dumps(fields).encode()


BUNDLE_CASES = st.one_of(
    BUNDLES.map(lambda bundle: BundleCase(bundle.to_json().encode(), bundle)),
    BUNDLES.flatmap(lambda bundle: mutations(bundle.to_json().encode())).map(BundleCase),
    _shaped_bundles().map(BundleCase),
    json_texts().map(lambda text: BundleCase(text.encode())),
    st.binary(max_size=300).map(BundleCase),
)


def check_bundle_file(case: BundleCase) -> None:
    """`chargepin charger init --bundle FILE` on any file: a charger or a ChargepinError.

    The file goes through read_bundle and, when accepted, through provision_charger, the
    step that stores what the bundle says.
    """
    with tempfile.TemporaryDirectory(prefix="chargepin-fuzz-") as tmp:
        path = Path(tmp) / "bundle.json"
        path.write_bytes(case.data)
        read = outcome(lambda: read_bundle(path), ChargepinError)
        if case.bundle is not None:
            assert read == case.bundle, f"{case.bundle!r} read as {read!r}"
        if isinstance(read, ChargepinError):
            return
        assert ProvisioningBundle.from_json(read.to_json()) == read
        outcome(
            lambda: provision_charger(
                Path(tmp) / "charger.db",
                serial=read.serial,
                model=read.model,
                firmware=read.firmware,
                produced=read.produced,
                secret=read.secret,
            ),
            ChargepinError,
        )

"""The charger's OCPP 2.0.1 device model: which components and variables it has, what each
reads as, and what a write to each would do (Part 1 "Device model", Part 2 B05-B07, B06).

A vendor component `BluetoothPin` (the standard has no Bluetooth or local-access component) and
the standard `SecurityCtrlr` variables the charger has. Reads come from a `Snapshot` of the
charger's state; a write is parsed here into the owner action it stands for, which the charger
then applies through the ticket rules (core.action_policy, core.pin_state): one set of rules
whichever way a change arrives. No I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from chargepin.core.csms_auth import password_problem
from chargepin.core.errors import ChargepinError
from chargepin.core.ocpp_events import timestamp
from chargepin.core.pin import Pin
from chargepin.core.policy import PinMode
from chargepin.core.profiles import ProfileName
from chargepin.core.tickets import Action

BLUETOOTH_PIN: Final = "BluetoothPin"
SECURITY_CTRLR: Final = "SecurityCtrlr"
ACTUAL: Final = "Actual"
"""The one attribute type the charger's variables have."""

VALUE_MAX: Final = 2500
"""GetVariableResult / VariableAttribute value: string of at most 2500 characters."""


class Mutability(enum.StrEnum):
    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


class GetStatus(enum.StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(enum.StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


@dataclass(frozen=True)
class Variable:
    """One variable of the device model, as GetBaseReport describes it."""

    component: str
    name: str
    mutability: Mutability
    data_type: str
    """OCPP DataEnumType: boolean, integer, string, dateTime, OptionList, SequenceList."""
    values_list: str | None = None


VARIABLES: Final = (
    Variable(BLUETOOTH_PIN, "Enabled", Mutability.READ_WRITE, "boolean"),
    Variable(BLUETOOTH_PIN, "Mandatory", Mutability.READ_ONLY, "boolean"),
    Variable(
        BLUETOOTH_PIN,
        "PinClass",
        Mutability.READ_ONLY,
        "OptionList",
        ",".join(mode.value for mode in PinMode),
    ),
    Variable(
        BLUETOOTH_PIN,
        "Profile",
        Mutability.READ_ONLY,
        "OptionList",
        ",".join(name.value for name in ProfileName),
    ),
    Variable(BLUETOOTH_PIN, "Epoch", Mutability.READ_ONLY, "integer"),
    Variable(BLUETOOTH_PIN, "FailedAttempts", Mutability.READ_ONLY, "integer"),
    Variable(BLUETOOTH_PIN, "LockedUntil", Mutability.READ_ONLY, "dateTime"),
    Variable(BLUETOOTH_PIN, "BondedPhones", Mutability.READ_ONLY, "SequenceList"),
    Variable(BLUETOOTH_PIN, "Pin", Mutability.WRITE_ONLY, "string"),
    # The standard calls it a passwordString; the 2.0.1 DataEnumType has no such value: string.
    Variable(SECURITY_CTRLR, "BasicAuthPassword", Mutability.WRITE_ONLY, "string"),
    Variable(SECURITY_CTRLR, "Identity", Mutability.READ_ONLY, "string"),
    Variable(SECURITY_CTRLR, "SecurityProfile", Mutability.READ_ONLY, "integer"),
    Variable(SECURITY_CTRLR, "OrganizationName", Mutability.READ_ONLY, "string"),
    Variable(SECURITY_CTRLR, "CertificateEntries", Mutability.READ_ONLY, "integer"),
)
"""Every variable, in report order."""

_BY_NAME: Final[Mapping[tuple[str, str], Variable]] = {
    (variable.component, variable.name): variable for variable in VARIABLES
}
COMPONENTS: Final = frozenset(variable.component for variable in VARIABLES)


@dataclass(frozen=True)
class Snapshot:
    """The charger's state as the device model reads it, taken at one instant."""

    pin_enabled: bool
    pin_class: PinMode
    profile: ProfileName
    epoch: int
    failed_attempts: int
    locked_until: float | None
    """None when not locked."""
    bonded_phones: tuple[str, ...]
    identity: str
    security_profile: int
    organization: str = "chargepin"

    def value(self, variable: Variable) -> str | None:
        """What `variable` reads as (None: it has no value now, e.g. LockedUntil unlocked)."""
        values: dict[str, str | None] = {
            "Enabled": _boolean(self.pin_enabled),
            "Mandatory": _boolean(self.pin_class is PinMode.MANDATORY),
            "PinClass": self.pin_class.value,
            "Profile": self.profile.value,
            "Epoch": str(self.epoch),
            "FailedAttempts": str(self.failed_attempts),
            "LockedUntil": None if self.locked_until is None else timestamp(self.locked_until),
            "BondedPhones": _sequence(self.bonded_phones),
            "Identity": self.identity,
            "SecurityProfile": str(self.security_profile),
            "OrganizationName": self.organization,
            "CertificateEntries": "0",
        }
        return values[variable.name]


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _sequence(items: tuple[str, ...]) -> str:
    text = ",".join(items)
    while len(text) > VALUE_MAX:  # never cut an address in half
        items = items[:-1]
        text = ",".join(items)
    return text


def find(component: str, name: str) -> Variable | GetStatus:
    """The variable, or UnknownComponent / UnknownVariable."""
    if component not in COMPONENTS:
        return GetStatus.UNKNOWN_COMPONENT
    variable = _BY_NAME.get((component, name))
    return GetStatus.UNKNOWN_VARIABLE if variable is None else variable


@dataclass(frozen=True)
class Read:
    status: GetStatus
    value: str | None = None
    reason: str | None = None


def read(snapshot: Snapshot, component: str, name: str, attribute_type: str | None) -> Read:
    """GetVariables for one variable: WriteOnly ones answer Rejected (never their value)."""
    found = find(component, name)
    if isinstance(found, GetStatus):
        return Read(found)
    if (attribute_type or ACTUAL) != ACTUAL:
        return Read(GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
    if found.mutability is Mutability.WRITE_ONLY:
        return Read(GetStatus.REJECTED, reason="WriteOnly")
    return Read(GetStatus.ACCEPTED, snapshot.value(found))


@dataclass(frozen=True)
class OwnerChange:
    """A write that is an owner action, applied with the ticket rules."""

    action: Action
    args: Mapping[str, str]


@dataclass(frozen=True)
class NewPassword:
    """A new Basic auth password for the next connection."""

    password: str


@dataclass(frozen=True)
class Refused:
    status: SetStatus
    reason: str
    """A short reason code for statusInfo (at most 20 characters)."""
    detail: str = ""


Write = OwnerChange | NewPassword | Refused


def parse_write(component: str, name: str, attribute_type: str | None, value: str) -> Write:
    """What a SetVariables of `value` on one variable stands for, or why it is refused."""
    found = find(component, name)
    if isinstance(found, GetStatus):
        return Refused(SetStatus(found.value), found.value)
    if (attribute_type or ACTUAL) != ACTUAL:
        return Refused(SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE, "NotSupported")
    if found.mutability is Mutability.READ_ONLY:
        return Refused(SetStatus.REJECTED, "ReadOnly", f"{component}.{name} is read-only")
    if found.name == "Enabled":
        flag = value.strip().lower()
        if flag not in ("true", "false"):
            return Refused(SetStatus.REJECTED, "InvalidValue", "Enabled is true or false")
        return OwnerChange(Action.ENABLE_PIN if flag == "true" else Action.DISABLE_PIN, {})
    if found.name == "Pin":
        try:
            pin = Pin.parse_strong(value)
        except ChargepinError as error:
            return Refused(SetStatus.REJECTED, "InvalidValue", str(error))
        return OwnerChange(Action.CHANGE_PIN, {"pin": pin.digits})
    problem = password_problem(value)
    if problem is not None:
        return Refused(SetStatus.REJECTED, "InvalidValue", problem)
    return NewPassword(value)


def report(snapshot: Snapshot, configuration_only: bool = False) -> list[dict[str, object]]:
    """NotifyReport reportData (snake_case keys, as the `ocpp` package takes them): every
    variable (FullInventory), or the writable ones (ConfigurationInventory). WriteOnly
    variables are listed without a value."""
    data: list[dict[str, object]] = []
    for variable in VARIABLES:
        if configuration_only and variable.mutability is Mutability.READ_ONLY:
            continue
        attribute: dict[str, object] = {
            "type": ACTUAL,
            "mutability": variable.mutability.value,
            "persistent": True,
            "constant": False,
        }
        value = None if variable.mutability is Mutability.WRITE_ONLY else snapshot.value(variable)
        if value is not None:
            attribute["value"] = value
        characteristics: dict[str, object] = {
            "data_type": variable.data_type,
            "supports_monitoring": False,
        }
        if variable.values_list is not None:
            characteristics["values_list"] = variable.values_list
        data.append(
            {
                "component": {"name": variable.component},
                "variable": {"name": variable.name},
                "variable_attribute": [attribute],
                "variable_characteristics": characteristics,
            }
        )
    return data

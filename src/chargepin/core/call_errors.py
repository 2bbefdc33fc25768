"""The CALLERROR a CALL for an action nobody handles gets (OCPP-J 2.0.1, Part 4, 4.3).

The RPC framework's table: `NotImplemented` is "Requested Action is not known by receiver",
`NotSupported` is "Requested Action is recognized but not supported by the receiver". The
`ocpp` package 2.1.0 answers the two the other way round (its `NotImplementedError` carries
NotSupported's description and is raised for a known action without a handler); ocpp-rpc,
EVerest and CitrineOS follow the table. The interoperability tests against ocpp-rpc found it
(docs/OCPP.md, "Interoperability"); the charger and the fleet both answer through this rule.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

MAX_ACTION_ECHO: Final = 50
"""Characters of the peer's action name repeated in the error's details (a bound, not a rule
of OCPP: the name is the peer's text, it may be anything up to a frame's size)."""


@dataclass(frozen=True)
class CallErrorAnswer:
    """What the CALLERROR says: its code, description and details."""

    code: str
    description: str
    details: dict[str, str]


NOT_IMPLEMENTED: Final = "NotImplemented"
NOT_SUPPORTED: Final = "NotSupported"
DESCRIPTIONS: Final = {
    NOT_IMPLEMENTED: "Requested Action is not known by receiver",
    NOT_SUPPORTED: "Requested Action is recognized but not supported by the receiver",
}


def unhandled_action(action: str, known: Collection[str]) -> CallErrorAnswer:
    """The answer to a CALL of `action` that has no handler here; `known` holds the actions of
    the OCPP version spoken (an action of the standard is recognised, anything else is not)."""
    name = action[:MAX_ACTION_ECHO]
    if action in known:
        return CallErrorAnswer(
            NOT_SUPPORTED, DESCRIPTIONS[NOT_SUPPORTED], {"cause": f"{name} is not supported here"}
        )
    return CallErrorAnswer(
        NOT_IMPLEMENTED, DESCRIPTIONS[NOT_IMPLEMENTED], {"cause": f"{name} is not an OCPP action"}
    )

"""The addresses a link really uses on the air, whatever Bumble resolved them to.

Bumble replaces a peer's resolvable private address with its identity address once it knows
the peer's IRK (`Device.on_le_connection`), and keeps the address on the air in
`peer_resolvable_address`. The presence proof (core.presence) binds the phone's address as the
charger sees it on this link; both ends must name the same one: the one on the air.
"""

from __future__ import annotations

from bumble.device import Connection


def peer_on_air(connection: Connection) -> str:
    """The peer's address on this link as sent over the air (resolvable or not)."""
    return str(connection.peer_resolvable_address or connection.peer_address)


def self_on_air(connection: Connection) -> str:
    """Our own address on this link as sent over the air."""
    return str(connection.self_resolvable_address or connection.self_address)

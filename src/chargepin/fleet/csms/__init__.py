"""The fleet service as an OCPP 2.0.1 CSMS (docs/OCPP.md): chargers connect to `/ocpp/{serial}`.

`route` authenticates the handshake and runs a `station.StationSession` per socket; what a
second fleet process would need lives in the database: the connection registry (`registry`),
the stations' security events (`events`) and the outbox of owner actions (`outbox`).
"""

"""Alembic migrations of the fleet database (applied on start and by `chargepin fleet migrate`)."""

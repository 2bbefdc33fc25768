"""HTTP routes of the fleet service; thin: validate, call a service function, return a schema."""

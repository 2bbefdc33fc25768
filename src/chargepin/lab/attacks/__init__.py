"""The attacks of the security lab (docs/SECURITY.md), each a Bumble central against the real
charger daemon on the virtual radio, with the charger's clock virtual: lockout periods are
fast-forwarded and charged to the attacker's simulated time.

Each attack module has `async def run(profile, trials, seed, budget) -> dict` (a JSON-able
report with `as_expected`) and `def summary(report) -> list[tuple[str, str]]` (its table rows);
`runner.run_attack` prints, writes the JSON and turns `as_expected` into the exit code.
"""

"""The lab: the demo, the benchmarks, and the in-process testbed they and the tests share.

Import the modules themselves (`chargepin.lab.demo`, `chargepin.lab.bench`,
`chargepin.lab.testbed`): each pulls in the whole stack, so this package imports none eagerly.
"""

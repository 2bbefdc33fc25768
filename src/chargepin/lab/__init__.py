"""The lab: the demo, the benchmarks, and the in-process testbed and fleet they and the tests
share.

Import the modules themselves (`chargepin.lab.demo`, `chargepin.lab.bench`,
`chargepin.lab.testbed`, `chargepin.lab.local_fleet`): each pulls in the whole stack, so this
package imports none eagerly.
"""

"""The decision core: pure state machines, no I/O and no clock.

Events and the time go in, effects come out. :mod:`~vnicbond.core.engine` composes one group's
failure detector (:mod:`~vnicbond.core.detector`), election (:mod:`~vnicbond.core.group`,
with :mod:`~vnicbond.core.placement`), probe frames (:mod:`~vnicbond.core.prober`) and the
events it reports (:mod:`~vnicbond.core.events`); :mod:`~vnicbond.core.reload` says what a
reload may change, :mod:`~vnicbond.core.targets` which targets each member probes. Nothing here
opens a socket, reads a clock, logs or touches the kernel (tests/unit/test_architecture.py
checks it).
"""

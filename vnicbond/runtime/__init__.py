"""The event-loop glue: the daemon, one runtime per group, one home per member.

:mod:`~vnicbond.runtime.daemon` runs the process (start-up, signals, the operator's socket,
reloads) and routes link events to the groups; :mod:`~vnicbond.runtime.group` carries out one
group's engine effects on its TAP, datapath and members; :mod:`~vnicbond.runtime.member` owns
one member's sockets, MAC and link; :mod:`~vnicbond.runtime.status` makes the status document;
:mod:`~vnicbond.runtime.upgrade` hands the running daemon over to newly installed code in the
same process, and :mod:`~vnicbond.runtime.bridge` forwards meanwhile.
"""

"""The cluster scheduler: pure decision code (no I/O) and, later, the loop around it.

* :mod:`~flotte.engine.keyspace`: registry keys and their JSON records;
* :mod:`~flotte.engine.model`: the scheduler's input (:class:`ClusterView`)
  and output (:class:`Decision`, :class:`Plan`);
* :mod:`~flotte.engine.rules`: fleet's ``AbleToRun`` and the global units
  of a machine, straight over a view;
* :mod:`~flotte.engine.scheduler`: fleet's reconcile, indexed and incremental;
* :mod:`~flotte.engine.states`: desired-state table and derived current state;
* :mod:`~flotte.engine.rolling`: which copies of an updated unit restart now;
* :mod:`~flotte.engine.glob`: Go ``path.Match`` globs.
"""

"""The matching rules, one per module, behind two small interfaces.

A :class:`PairFilter` says whether two tickets may be paired at all (it
must be symmetric); a :class:`PairScorer` says how good a pair is (higher is
better). The pool (``pool.py``) asks every filter, then picks the best-scored
of the oldest compatible candidates. Everything a rule needs beyond the two
tickets comes in a :class:`PairContext`: the time (relaxation), the latency
between regions, and the pair history (blocks, recent meetings).

Modules: ``base`` (the interfaces and PairContext), ``relaxation`` (the
schedule), and one module per rule: ``distinct_users``, ``media``,
``language``, ``gender``, ``age``, ``scope``, ``interests``, ``blocks``,
``recent``, ``latency``, ``reports``, ``waiting``. ``defaults`` lists the
matchmaker's rule set.
"""

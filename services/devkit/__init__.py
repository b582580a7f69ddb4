"""Tooling for tests and demos, shipped with the product so users' tests can use it too.

- ``synthetic_media``    a camera and microphone that are cheap to encode and identify themselves,
                         the first-frame rule that reads them, and ``synthetic_client()``
- ``demo_geo``           a SYNTHETIC GeoIP database (one made-up /24 per region)
- ``embedded_postgres``  a private PostgreSQL cluster from the machine's server binaries; it finds
                         them with ``postgres_binaries`` and places its data with ``postgres_placement``
                         (as root, somewhere the server account can reach)
- ``errors``             ``SetupError``: a condition the user can fix, shown without a traceback
- ``scratch_database``   an empty database per test on a shared server
- ``local_cluster``      the whole system as local processes (what ``duet up`` runs)
- ``demo``               the demo calls and their connect-time tables
- ``greeter``            the bot that waits in the pool while ``duet up`` serves
"""

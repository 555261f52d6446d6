"""Several hotline nodes: the routing brain (``brain``: one active ACD engine, a hot standby,
a durable ordered log in PostgreSQL) and the SIP edge (``edge*``). See docs/cluster.md."""

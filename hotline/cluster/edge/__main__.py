"""``python -m hotline.cluster.edge``: run Kamailio as the edge (see the package's docstring)."""

from hotline.cluster.edge import main

main()

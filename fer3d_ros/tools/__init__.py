"""Tools built on the library and the nodes: fer3d-bag, the demo, run reports, sample data."""

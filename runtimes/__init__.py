"""Container runtimes a node agent drives (Podman, simulated), as plugins."""

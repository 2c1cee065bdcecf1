"""End-to-end acceptance checks of issues, on a whole cluster (slow)."""

"""The Deployment controller (being written)."""

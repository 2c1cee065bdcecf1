"""Built-in plugins: every kybern component, registered through the kybern.plugins entry points."""

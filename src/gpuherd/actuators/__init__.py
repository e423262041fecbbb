"""How to release and restore one tenant: one module per method, one interface."""

"""The broker's HTTP API (ASGI): served on a unix socket, callable in-process by tests."""

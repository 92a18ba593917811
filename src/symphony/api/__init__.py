"""The node's local HTTP API (starlette, served by hypercorn on trio)."""

"""Routers, one per area of docs/api.md; each is thin: parse, authorise, call, serialise."""

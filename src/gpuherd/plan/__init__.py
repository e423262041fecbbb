"""Capacity planning: do the tenants and jobs fit in VRAM, at which hours, on which GPU."""

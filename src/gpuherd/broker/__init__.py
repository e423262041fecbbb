"""The broker: frees VRAM from lower-priority tenants, runs jobs, always restores the tenants."""

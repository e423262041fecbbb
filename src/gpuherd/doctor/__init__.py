"""Diagnostics: is this host or container really on the GPU, and if not, why and how to fix it."""

"""Readers that turn input files into typed, positioned objects for the rules."""

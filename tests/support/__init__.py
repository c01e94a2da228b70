"""Shared test support: real servers and helpers that several test modules start."""

"""Prefect flows for the SSD pipeline (thin: they sequence, retry and pass paths)."""

"""Data in: reading import files, the one write path into the analytics tables, demo data."""

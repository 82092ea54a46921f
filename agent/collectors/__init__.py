"""Collectors: one module each, declared once in catalog.py."""

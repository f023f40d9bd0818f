"""Exported models (export.py writes them, test.py reads them): formats, the program, the JSON beside them."""

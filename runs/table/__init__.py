"""compare.py's parts: find run folders, read each from its own files, group seeds, print a table."""

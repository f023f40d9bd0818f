"""Code the test modules share, one module per job: test modules import from here (and fixtures come from
tests/conftest.py), never from each other. Nothing here is a test; pytest collects no file of this package."""

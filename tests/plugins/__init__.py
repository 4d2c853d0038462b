"""Blocks registered only by tests (loaded through ``model.plugins=[tests.plugins.faulty]``)."""

"""Retrieval test collections: the shared type and the loaders for each source format."""

"""Air-gapped bundles: the file format (pure) and the create and load operations."""

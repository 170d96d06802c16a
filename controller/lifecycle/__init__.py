"""The commands' sequencing: prepare and preflight, up, down, status, the switch transaction and its strategies."""

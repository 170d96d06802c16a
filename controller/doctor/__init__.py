"""`controller doctor`: the facts read off the machine, and the checks that judge them (pure)."""

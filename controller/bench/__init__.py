"""`controller bench`: the figures and tables (pure), the run sequence, the report and the saved runs."""

"""The Jinja templates, shipped inside the package as controller.templates (see pyproject.toml)."""

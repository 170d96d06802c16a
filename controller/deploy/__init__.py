"""Pure renderers: one serving spec, rendered as a Compose file or as Kubernetes manifests.
Nothing here runs a command."""

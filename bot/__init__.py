"""Application shell: settings, the composition root, the CLI; each concern in its own package."""

"""The application layer: the composition root, read models for the UIs, and user actions."""

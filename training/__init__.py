"""Fine-tuning and evaluation of face embedders (torch; not needed to serve)."""

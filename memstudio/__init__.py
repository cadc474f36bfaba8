"""``memstudio``: the command-line client for power users and operators (python -m memstudio)."""

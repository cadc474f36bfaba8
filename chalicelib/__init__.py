"""Memory Studio domain code, packaged by Chalice with app.py."""
__version__ = "0.1.0"

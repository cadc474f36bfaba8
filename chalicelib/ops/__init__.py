"""Operator commands run by hand or by the deploy, never on a request: the Atlas search index and
the one-off storage layout migration. Nothing in the product imports them."""

"""One module per vendor: its webhook format mapped to event families (see base.py)."""

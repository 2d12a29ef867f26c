"""Pieces every layer shares: filesystem paths, typed config I/O, benchmark results."""

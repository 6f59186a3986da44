"""Inference role: frame messages -> detection events. Stateless; scale out by adding group members."""

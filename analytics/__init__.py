"""The analytics role: detection events -> tracks, zone, line and crowd events (stateful per camera)."""

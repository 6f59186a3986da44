"""The operator's web console: cameras live, tracks and events, counts, people and health (`visionstream console`)."""

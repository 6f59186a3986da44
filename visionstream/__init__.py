"""Shared by all three roles: settings, Kafka client setup, topics, the consume loop, dead letters, metrics."""

"""Ingest role: cameras and files -> sampled, preprocessed, JPEG-encoded frame messages on Kafka."""

"""Local services and data that the tests and the benchmarks both use: free ports, a private PostgreSQL server,
real camera endpoints on loopback (GStreamer's RTSP server, MJPEG, a silent socket), topic reads and writes, and
generated detection events. No role imports it; the local Kafka broker is cli/broker.py (users run it too)."""

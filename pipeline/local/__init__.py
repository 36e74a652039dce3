"""Real local services (Kafka broker, Triton server) started on loopback by the project itself."""

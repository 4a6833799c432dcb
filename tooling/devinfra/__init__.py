"""Local infrastructure for development and tests: real Kafka and Weaviate, built and cached outside git."""

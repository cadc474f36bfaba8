"""The local stack: moto's AWS, the embedded store and the API on one machine."""

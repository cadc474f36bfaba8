"""The face engine: model bundle, detection, alignment, embedding, and the SageMaker-contract server."""

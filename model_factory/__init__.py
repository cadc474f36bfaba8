"""The offline model factory: converters, calibration, bundle building and deployment.

Nothing here runs in the serving image (the Dockerfile leaves this folder out); it imports the
serving side (``gpu_endpoint.bundle``, ``gpu_endpoint.engine``), never the other way round.
"""

"""The adapters to storage: MongoDB (the connection, photo, people, account and lease stores, the
vector indexes) and S3 (``ObjectStorage``). The only modules that query MongoDB or call S3; they
import no domain module."""

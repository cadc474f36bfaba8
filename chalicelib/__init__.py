"""Memory Studio domain code, packaged by Chalice with app.py."""

import os

# Image decoding forks (chalicelib/shared/isolation.py). OpenBLAS's fork handler tears down its thread
# pool, and a matrix product running in another thread at that moment never returns (seen: the
# endpoint hung in cohort_stats under concurrent requests). Without a pool there is nothing to
# tear down. Set before numpy is imported; a value the environment already has wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.5.0"

# The Lambda runtimes the functions are deployed on (Amazon Linux 2023, glibc 2.34): the last one by
# infrastructure/lambda_runtime.py, and a plain ``chalice deploy`` only from these (app.py).
LAMBDA_RUNTIMES = ("python3.12", "python3.13")

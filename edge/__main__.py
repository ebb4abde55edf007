import os
import sys

# A serving process runs one BLAS thread (edge.app.one_blas_thread): telling OpenBLAS before
# numpy loads spares it starting a thread pool it would never use, about 70 ms of start-up.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from edge.cli import main  # noqa: E402

sys.exit(main())

"""What the TensorFlow adapters share: sizing TF's thread pools before its runtime starts.

TF creates one intra-op and one inter-op pool per process when its runtime starts (the first op, which loading
a SavedModel or a Keras file runs), and every TF model in the process shares them. The sizes can be set only
before that; `tf.config.threading` refuses a change afterwards. So the first TF adapter loaded in a process
decides for all of them: a gateway or a bench group with one thread count gets that count on every TF row,
and a later load asking for another count gets a warning naming the sizes in force instead of silently
running with them.
"""

from __future__ import annotations

import logging

import tensorflow as tf

log = logging.getLogger("crossdeploy.runtimes")

# As the onnxruntime adapter: one inter-op thread, so `threads` bounds the threads that compute. The digits
# CNN is a chain of ops with nothing to run side by side.
INTER_OP_THREADS = 1


def use_threads(threads: int) -> None:
    """Sizes TF's pools to `threads` intra-op and INTER_OP_THREADS inter-op threads; call before any TF op."""
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(threads)  # a no-op when the size asked is already in force
        threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
    except RuntimeError:
        intra, inter = threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()
        log.warning("TensorFlow already runs in this process with %s intra-op and %s inter-op threads; its pools "
                    "are process-wide and fixed once started, so this model runs with them, not with %d intra-op "
                    "and %d inter-op as asked", _size(intra), _size(inter), threads, INTER_OP_THREADS)


def _size(threads: int) -> str:
    return str(threads) if threads else "TF's default (0: one per core)"

"""TensorFlow adapters honour the thread setting (what `serve --threads` and the bench's thread groups rely on).

TF sizes its pools once per process, at its first op, so each case runs in a fresh interpreter as the gateway
and every bench thread group do.
"""

import json
import subprocess
import sys

import pytest

LOAD_AND_PREDICT = """
import json, logging, sys
import crossdeploy
import numpy as np
import tensorflow as tf
from crossdeploy.repository import ModelRepository
from crossdeploy.runtimes import open_runtime

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
repository = ModelRepository(sys.argv[1])
seen = []
for name, threads in zip(sys.argv[2::2], sys.argv[3::2]):
    runtime = open_runtime(repository, name, threads=int(threads)).load()
    logits = runtime.predict({"image": np.zeros((3, 8, 8), np.float32)})["logits"]
    seen.append({"variant": name, "shape": list(logits.shape),
                 "intra": tf.config.threading.get_intra_op_parallelism_threads(),
                 "inter": tf.config.threading.get_inter_op_parallelism_threads()})
print(json.dumps(seen))
"""


def load_in_fresh_process(repository, *loads: tuple[str, int]) -> tuple[list[dict], str]:
    args = [str(part) for load in loads for part in load]
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(repository.root), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["keras-eager", "torch-savedmodel"])  # the keras and savedmodel adapters
def test_a_tf_runtime_runs_with_the_threads_it_was_given(repository, name, threads):
    [seen], _ = load_in_fresh_process(repository, (name, threads))
    assert seen["shape"] == [3, 10]
    assert seen["intra"] == threads
    assert seen["inter"] == 1  # one inter-op thread, as the onnxruntime adapter: `threads` bounds the compute


def test_a_later_load_asking_for_other_threads_is_told_the_count_in_force(repository):
    (first, second), stderr = load_in_fresh_process(repository, ("keras-savedmodel", 1), ("keras-eager", 2))
    assert first["intra"] == second["intra"] == 1  # process-wide and fixed at TF's first op
    assert second["shape"] == [3, 10]  # the second model still serves, on the pools in force
    assert "already runs in this process with 1 intra-op and 1 inter-op threads" in stderr
    assert "not with 2 intra-op" in stderr


def test_the_same_count_again_is_no_warning(repository):
    seen, stderr = load_in_fresh_process(repository, ("keras-eager", 2), ("torch-savedmodel", 2))
    assert [s["intra"] for s in seen] == [2, 2]
    assert "already runs" not in stderr

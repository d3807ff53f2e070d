"""The strict floor: the smallest honest endpoint a user would hand-write to serve one ONNX file over KServe V2 JSON.

FastAPI, orjson in and out, onnxruntime with one intra-op and one inter-op thread and no spinning, inference
inline on the event loop, no validation, no metrics. The gateway is measured against it (bench/gateway_floor.py),
so it shares no code with the gateway: a faster gateway must be faster than this, not than a copy of itself.
It reads the first tensor of the request whatever its name and answers with every output of the model. Run:
    python -m crossdeploy.bench.floor --model model_repository/torch-onnx/1/model.onnx --port 8101
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response


def single_threaded_session(model: str) -> ort.InferenceSession:
    """One thread for everything: the event loop's own. Pool threads that spin between calls would take the
    core wrk runs on, and a floor that competes with its load generator is not a floor."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def create_floor(model: str) -> FastAPI:
    session = single_threaded_session(model)
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        tensor = orjson.loads(await request.body())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        results = session.run(output_names, {input_name: x})
        outputs = [{"name": n, "datatype": "FP32", "shape": list(y.shape), "data": y.ravel()} for n, y in zip(output_names, results)]
        body = orjson.dumps({"model_name": name, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(body, media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    uvicorn.run(create_floor(args.model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()

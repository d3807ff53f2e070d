"""The floor: the smallest honest FastAPI + onnxruntime endpoint a user would hand-write for one ONNX file.

It speaks just enough KServe V2 JSON (one FP32 input, one output) for the same wrk script to drive it and the
gateway alike. No validation, no metrics, no executor: inference inline on the event loop. Run:
    python -m crossdeploy.bench.floor --model model_repository/torch-onnx/1/model.onnx --port 8101
"""

from __future__ import annotations

import argparse

import crossdeploy  # noqa: F401  (telemetry and caches off before onnxruntime is imported)

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response


def create_floor(model: str) -> FastAPI:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        tensor = orjson.loads(await request.body())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = session.run([output_name], {input_name: x})[0]
        body = {"model_name": name, "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel()}]}
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

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

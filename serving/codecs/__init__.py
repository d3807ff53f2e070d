"""Wire codecs, one module per wire form, as MLServer keeps `mlserver/codecs/` apart from its handlers.

Each turns a request body into `dict[str, numpy.ndarray]` checked against a model's signature (`decode`) and
outputs back into bytes (`encode`), and offers the client's side (`encode_request`, `decode_response`) that the
benchmarks and /v1/compare's transport check use. None of them knows about routes, FastAPI or HTTP status codes:
they raise `InvalidInput`, and the gateway's error table answers for them.

- `tensors`: JSON numbers to a typed array, and the one check of an array against a signature
- `v2_json`: KServe V2 / Open Inference Protocol JSON tensors
- `v2_binary`: the V2 binary tensor data extension (`Inference-Header-Content-Length`)
- `tfserving`: TF Serving REST `:predict`, row (`instances`) and columnar (`inputs`) forms
- `torchserve`: TorchServe predictions: an uploaded image or JSON `{"data": ...}`
- `image`: a picture of a handwritten digit to the 8x8 representation the models take
"""

"""torchvision.ops as far as onnx2torch touches it: the two converters that need it refuse clearly."""


def _unsupported(name):
    def refuse(*args, **kwargs):
        raise NotImplementedError(
            f"torchvision.ops.{name} is unavailable (crossdeploy stubs torchvision for onnx2torch); "
            "models with NonMaxSuppression or RoiAlign cannot take the onnx2torch pathway"
        )

    return refuse


nms = _unsupported("nms")
box_convert = _unsupported("box_convert")
roi_align = _unsupported("roi_align")

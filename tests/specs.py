"""The model spec text the spec and matrix tests write (one template; each test fills in what it varies)."""

TEMPLATE = """
name = "{name}"
framework = "{framework}"
factory = "{factory}"
required = {required}
[[inputs]]
name = "image"
datatype = "FP32"
shape = [-1, 8, 8]
[[outputs]]
name = "logits"
datatype = "FP32"
shape = [-1, 10]
[samples]
{samples}
"""


def spec_text(name: str, framework: str, factory: str, required: str, samples: str) -> str:
    return TEMPLATE.format(name=name, framework=framework, factory=factory, required=required, samples=samples)

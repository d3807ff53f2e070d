"""Environments of their own: built once into a tmp root, rebuilt when the requirements change, and a tool
script run there whose response (or failure) comes back typed. A small pinned package from the local index."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from crossdeploy.errors import CrossdeployError, ExportError
from export.environments import LOG, STAMP, Environment, ToolRequest, ensure, main, run_tool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="venvs here use bin/python")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("envs")
    requirements = root / "tiny.txt"
    requirements.write_text("six==1.17.0\n")
    env = Environment(name="tiny", requirements=requirements)
    return env, root, ensure(env, root)


def tool(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "tool.py"
    script.write_text("import json, sys, time\nfrom pathlib import Path\n" + textwrap.dedent(body))
    return script


def request(tmp_path: Path) -> ToolRequest:
    return ToolRequest(inputs={"program": str(tmp_path / "in.pt2")}, output_dir=str(tmp_path / "out"),
                       options={"batch": 3})


def test_built_once_with_its_requirements_and_a_log(built):
    env, root, path = built
    assert (path / STAMP).read_text().strip() == env.stamp()
    assert "six" in (path / LOG).read_text()
    marker = path / "marker"
    marker.write_text("kept")
    assert ensure(env, root) == path and marker.exists()  # unchanged: not rebuilt


def test_rebuilt_when_the_requirements_change(tmp_path):
    requirements = tmp_path / "r.txt"
    requirements.write_text("")
    env = Environment(name="changing", requirements=requirements)
    path = ensure(env, tmp_path)
    (path / "marker").write_text("from the first build")
    requirements.write_text("six==1.17.0\n")
    assert ensure(env, tmp_path) == path
    assert not (path / "marker").exists()
    assert (path / STAMP).read_text().strip() == env.stamp()
    assert list((path / "lib").glob("python*/site-packages/six.py"))


def test_a_tool_response_round_trips_from_inside_the_environment(built, tmp_path):
    env, root, path = built
    script = tool(tmp_path, """
        import six
        request = json.loads(Path(sys.argv[1]).read_text())
        out = Path(request["output_dir"]) / "model.bin"
        out.write_bytes(b"x" * request["options"]["batch"])
        Path(sys.argv[2]).write_text(json.dumps({"outputs": {"model": str(out)},
            "versions": {"six": six.__version__}, "notes": [sys.prefix, request["inputs"]["program"]]}))
    """)
    response = run_tool(env, script, request(tmp_path), "v", root=root)
    assert Path(response.outputs["model"]).read_bytes() == b"xxx"
    assert response.versions == {"six": "1.17.0"}
    assert response.notes == [str(path), str(tmp_path / "in.pt2")]


@pytest.mark.parametrize("body, said", [
    ("print('first line', file=sys.stderr)\nprint('the tool broke', file=sys.stderr)\nsys.exit(3)",
     "exited with 3: first line | the tool broke"),
    ("print('slow tool started', file=sys.stderr, flush=True)\ntime.sleep(60)",
     "did not finish within 1 s: slow tool started"),
    ("print('wrote nothing', file=sys.stderr)", "wrote no response: wrote nothing"),
    ("Path(sys.argv[2]).write_text('{\"outputs\": 5}')", "wrote an invalid response"),
])
def test_a_failing_tool_is_one_export_error_with_its_stderr_tail(built, tmp_path, body, said):
    env, root, _ = built
    with pytest.raises(ExportError) as caught:
        run_tool(env, tool(tmp_path, body), request(tmp_path), "torch-litert", timeout=1, root=root)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("torch-litert: export failed: tool.py ")
    assert said in message


def test_a_requirement_that_does_not_exist_fails_the_build_naming_its_log(tmp_path):
    requirements = tmp_path / "broken.txt"
    requirements.write_text("crossdeploy-no-such-package==1.0\n")
    env = Environment(name="broken", requirements=requirements)
    with pytest.raises(CrossdeployError) as caught:
        ensure(env, tmp_path)
    message = str(caught.value)
    log = tmp_path / ".venv-broken.log"
    assert "\n" not in message and str(log) in message and "broken.txt" in message
    assert "crossdeploy-no-such-package" in log.read_text()
    assert not (tmp_path / ".venv-broken" / STAMP).exists()


def test_the_build_command_refuses_an_unknown_environment(capsys):
    assert main(["no-such-env"]) == 1
    assert capsys.readouterr().err.strip() == "crossdeploy: error: unknown environment(s) no-such-env; known: litert"

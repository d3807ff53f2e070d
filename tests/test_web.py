"""The page in a real browser: Debian's chromium driven by Playwright (never a browser a tool downloads), against
a live gateway. Drawing, a known test sample, onnxruntime-web in the page against the server, the report pages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from .live import ENGINES, gateway_on

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports_workdir(repository, tmp_path_factory) -> Path:
    """A workdir holding a parity report and a (quick) latency report, as `make up` + `make bench` leave, made once
    for both engines. On a thread of its own: the load generator runs an event loop, and once the browser is up,
    Playwright's sync API runs one in this thread."""
    from crossdeploy.bench.run import run_bench
    from crossdeploy.export.parity import run_parity
    from crossdeploy.export.reports import write_reports

    workdir = tmp_path_factory.mktemp("web-work")

    def make():
        write_reports(run_parity(repository, write=False), workdir / "reports" / "parity")
        run_bench(repository.root, workdir / "reports" / "bench", quick=True, variants=["torch-onnx"], protocols=["v2-binary"])

    with ThreadPoolExecutor(1) as thread:
        thread.submit(make).result()
    return workdir


@pytest.fixture(scope="module", params=ENGINES)
def site(repository, reports_workdir, request):
    """The gateway on each engine, over that workdir."""
    with gateway_on(request.param, repository, request, workdir=reports_workdir) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (.ci/run installs it)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, errors


def _rows(page, where: str) -> dict[str, dict]:
    found = page.eval_on_selector_all(f"tr[data-where={where}]", "els => els.map(e => ({...e.dataset}))")
    return {row["variant"]: row for row in found}


def _draw_one(page) -> None:
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 128, box["y"] + 30)
    page.mouse.down()
    for y in range(30, 230, 8):
        page.mouse.move(box["x"] + 128 + (y - 30) // 20, box["y"] + y)
    page.mouse.up()


def test_a_drawn_stroke_gets_an_answer_from_every_variant_and_the_browser(site, page, repository):
    page.goto(site.url)
    _draw_one(page)
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    assert set(_rows(page, "server")) == set(repository.names())
    onnx = {n for n in repository.names() if repository.config(n).format == "onnx"}
    assert set(_rows(page, "browser")) == onnx and len(onnx) == 3
    preview = page.eval_on_selector("#preview", "c => c.getContext('2d').getImageData(0, 0, 128, 128).data.some(v => v > 0)")
    assert preview  # the 8x8 the models saw is shown


def _a_seed_the_reference_gets_right(site) -> tuple[int, int]:
    with httpx.Client(base_url=site.url, timeout=60) as http:
        for seed in range(20):
            sample = http.get("/v1/samples", params={"count": 1, "seed": seed}).json()
            answer = http.post("/v1/compare", json={"image": sample["images"][0], "variants": ["torch-eager", "keras-eager"]}).json()
            if all(row["predicted"] == [sample["labels"][0]] for row in answer["variants"]):
                return seed, sample["labels"][0]
    raise AssertionError("no test sample in 20 that both eager models classify right")


def test_a_known_sample_gets_the_right_class_from_every_float_variant_and_the_browser_agrees(site, page, tmp_path):
    seed, label = _a_seed_the_reference_gets_right(site)
    page.goto(f"{site.url}/?seed={seed}")
    page.click("#sample")
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    assert page.get_attribute("#truth", "data-label") == str(label)
    server, browser_rows = _rows(page, "server"), _rows(page, "browser")
    for name, row in server.items():
        if row["precision"] == "fp32":
            assert row["predicted"] == str(label), name
    for name, row in browser_rows.items():
        assert float(row["diff"]) <= 1e-4, (name, row["diff"])  # onnxruntime-web in the page vs the server
        assert row["predicted"] == server[name]["predicted"]
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_where_shows_the_chain_and_its_depth_plot_for_the_digit_on_the_canvas(site, page):
    page.goto(f"{site.url}/?seed=3")
    page.click("#sample")
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    eager = page.locator("tr[data-where=server][data-variant=torch-eager] a.where")
    assert eager.count() == 0  # the reference has no chain to follow
    page.click("tr[data-where=server][data-variant=torch-tflite] a.where")
    page.wait_for_selector("#where[data-ready=yes]", timeout=300_000)
    text = page.inner_text("#where")
    assert "where torch-tflite leaves its tolerance" in text and "torch-eager → torch-onnx → torch-tflite" in text
    assert "torch -> ONNX: within tolerance" in text and "first divergence" not in text, text
    assert page.eval_on_selector("#where img", "i => i.complete && i.naturalWidth") > 300


@pytest.mark.parametrize("report", ["parity", "latency"])
def test_the_report_pages_render_their_tables_and_charts(site, page, report):
    page.goto(f"{site.url}/reports/{report}")
    page.wait_for_selector("body[data-ready=yes]", timeout=60_000)
    assert page.locator("#table tbody tr").count() >= 1
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
    sizes = page.eval_on_selector_all("#charts img", "imgs => imgs.map(i => i.naturalWidth)")
    assert sizes and all(width > 300 for width in sizes), sizes


def test_the_page_uses_no_cdn(site):
    with httpx.Client(base_url=site.url) as http:
        html = http.get("/").text + http.get("/static/app.js").text
        assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html
        assert http.get("/static/vendor/ort-wasm-simd-threaded.wasm").status_code == 200
        artifact = http.get("/v1/artifacts/torch-onnx/model.onnx")
        assert artifact.status_code == 200 and len(artifact.content) > 10_000
        assert http.get("/v1/artifacts/torch-tflite/model.onnx").status_code == 400

"""The matrix worker's known remedies: a pathway that fails is tried again with each remedy export/remedies.py lists
for it, each a full attempt (export, load, run, parity) of its own. The first that passes is the pathway's result,
as `ok with remedy`, with what it costs at serving time; if none passes, the first failure stands and the report
lists every remedy tried and how it failed.

The worker reports a pathway's steps as they happen (the supervisor times each one), but holds back its result
event until the remedies are done, so the supervisor sees one result per pathway.
"""

from __future__ import annotations

from dataclasses import replace

from crossdeploy.errors import first_lines

from .exporting import NEEDS, export_one
from .matrix_results import REMEDIED
from .pathways import BY_NAME
from .remedies import Remedy, remedies_for


class Capture:
    """Stands in for the worker's reporter during one attempt: step events go through, the result is kept."""

    def __init__(self, report):
        self.report, self.result = report, None

    def __call__(self, event: str, **fields) -> None:
        if event == "result":
            self.result = fields
        else:
            self.report(event, **fields)


def attempt(worker, pathway, keep: bool) -> dict | None:
    """One try at a pathway with the worker's current context and options: the fields of its result event
    (None for a pathway built only because another converts its file, and that built)."""
    real, capture = worker.report, Capture(worker.report)
    worker.report, worker.step = capture, "export"
    try:
        try:
            worker._pathway(pathway, keep)
        except Exception as exc:  # anything the steps did not expect fails this pathway, at the step it was in
            worker._unexpected(pathway.name, keep, exc)
    finally:
        worker.report = real
    return capture.result


def run_pathway(worker, pathway, keep: bool) -> None:
    """The pathway as it is, then, if it failed, with each of its remedies; one result event either way."""
    result = attempt(worker, pathway, keep)
    if result is None:
        return
    if keep and result["status"] != "ok" and worker.job.get("remedies", None) != []:
        result = with_remedies(worker, pathway, result)
    worker.report("result", **result)


def remedy_context(ctx, name: str, remedy: Remedy):
    """A copy of the export context with its own scratch folder: the remedy's files never replace the ones other
    pathways build on. It keeps the upstream file the pathway converts, unless the remedy rebuilds that."""
    scratch = ctx.scratch / f"remedy-{name}-{remedy.name}"
    scratch.mkdir(parents=True, exist_ok=True)
    source = NEEDS.get(name)
    kept = [source] if source and remedy.target == "self" and source in ctx.intermediates else []
    return replace(ctx, scratch=scratch, intermediates={k: ctx.intermediates[k] for k in kept},
                   workarounds={k: list(ctx.workarounds.get(k, [])) for k in kept})


def _one(worker, pathway, remedy: Remedy, first: dict) -> dict:
    record = remedy.record(first.get("message") or first["status"])
    if remedy.target == "upstream":
        source = BY_NAME[NEEDS[pathway.name]]
        worker.report("step", pathway=pathway.name, step="export")
        built = export_one(worker.repository, source, worker.ctx, keep=False, detail=True, options=remedy.options)
        if built.error:
            return {"pathway": pathway.name, "status": "export failed", "step": "export",
                    "message": f"{source.name} with {remedy.name}: {built.error}"}
        worker.remedy_args = {"remedy": record}
    else:
        worker.remedy_args = {"options": remedy.options, "remedy": record}
    result = attempt(worker, pathway, True)
    if result is not None and result["status"] == "ok":
        _recorded(worker, result, record)
    return result or {"pathway": pathway.name, "status": first["status"], "step": "export", "message": "no result"}


def _recorded(worker, result: dict, record) -> None:
    """The served variant's config names the remedy, also when the repository kept an identical earlier version."""
    config = worker.repository.config(result["variant"])
    if config.remedy != record:
        worker.repository.write_config(config.model_copy(update={"remedy": record}))


def with_remedies(worker, pathway, first: dict) -> dict:
    dynamic = worker.loaded.spec.inputs[0].shape[0] == -1
    remedies = remedies_for(pathway.name, worker.ctx.model, dynamic, worker.job.get("remedies"))
    base, tried = worker.ctx, []
    # What the first attempt left failed (and only that) blocks the pathways built on this one: a remedy's own
    # failed export must not, since the file they would be built from is still the first attempt's.
    failed = dict(worker.failed)
    for remedy in remedies:
        worker.ctx = remedy_context(base, pathway.name, remedy)
        try:
            result = _one(worker, pathway, remedy, first)
        except Exception as exc:  # a remedy that breaks in an unexpected way is one failed attempt, not the run
            result = {"status": "export failed", "step": worker.step, "message": first_lines(exc)}
        finally:
            used, worker.ctx, worker.remedy_args = worker.ctx, base, {}
            worker.failed.clear()
            worker.failed.update(failed)
        message = (result.get("message") or "").replace(f"{worker.repository.root}/", "").strip()
        tried.append({"remedy": remedy.name, "status": result["status"], "step": result.get("step"),
                      "message": message[:600]})
        if result["status"] == "ok":
            _adopt(worker, base, used, pathway.name, remedy)
            return {**result, "status": REMEDIED, "remedy": remedy.name, "remedy_attempts": tried,
                    "remedy_cost": serving_cost(remedy, result, first),
                    "remedy_replaces": f"{first['status']}: {(first.get('message') or '').strip()[:600]}"}
    return {**first, "remedy_attempts": tried} if tried else first


def _adopt(worker, base, used, name: str, remedy: Remedy) -> None:
    """A rescued pathway whose file others convert (torch-onnx, keras-onnx) hands them the remedied file, and
    their notes say so."""
    worker.failed.pop(name, None)
    if name in used.intermediates:
        base.intermediates[name] = used.intermediates[name]
        base.workarounds[name] = [*used.workarounds.get(name, []), f"{name}'s file was exported with the remedy "
                                                                   f"{remedy.name}: {remedy.summary}"]


def _kb(size: int) -> str:
    return f"{size / 1024:,.0f} KB"


def serving_cost(remedy: Remedy, result: dict, first: dict) -> str:
    """The remedy's documented cost, and the measured size against the unremedied artifact where there is one."""
    cost = remedy.cost
    if result.get("max_batch") == 1 and "fixed batch" not in cost:  # the chain fixed it on its own account
        cost += f"; and the batch came out fixed at 1: {result.get('batch_note') or 'the adapter splits larger batches'}"
    size, before = result.get("size_bytes"), first.get("size_bytes")
    if size and before:
        return f"{cost}; {_kb(size)} vs {_kb(before)} unremedied ({size / before - 1:+.0%})"
    return cost


# Where the unremedied artifact never existed (its export failed), an fp32 TFLite file's size is set against the same
# weights' ONNX file that needed no remedy: for the built-in models a TFLite file is 0.4-1.0x its ONNX file, so a
# remedied one that is larger shows the remedy's cost. Other formats are not compared (a TorchScript file from
# onnx2torch is 1.2x to 4.6x its ONNX file, a SavedModel carries its own overhead).
SIBLING = {"torch-tflite": "torch-onnx", "keras-tflite": "keras-onnx"}


def compare_sizes(results: list) -> None:
    """Adds the sibling comparison to every remedied row whose cost has no unremedied size (PathwayResult rows)."""
    plain = {(r.model, r.framework, r.pathway): r for r in results if r.status == "ok"}
    for r in results:
        if not r.remedy or not r.ok or not r.size_bytes or "unremedied" in r.remedy_cost:
            continue
        sibling = plain.get((r.model, r.framework, SIBLING.get(r.pathway, "")))
        if sibling is not None and sibling.size_bytes:
            r.remedy_cost += (f"; {_kb(r.size_bytes)} vs {_kb(sibling.size_bytes)} for {sibling.pathway} (ONNX, the "
                              f"same weights, no remedy: {r.size_bytes / sibling.size_bytes - 1:+.0%})")
        else:
            r.remedy_cost += f"; {_kb(r.size_bytes)} (no unremedied artifact to compare)"

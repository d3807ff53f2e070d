"""What `make fuzz` found, from schemathesis's JSON run reports and pytest's junit XML: the figures of
report.json (which docs render) and the same as report.md."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

# Schemathesis's failure codes: ST101/ST102 are 5xx answers; ST103..ST111 an answer the document does not
# describe (status, content type, headers, body); every other code (negative data accepted, positive data
# refused, auth, ...) is an "other" failure.
SERVER_ERRORS = {"ST101", "ST102"}
SCHEMA_VIOLATIONS = {f"ST{n}" for n in range(103, 112)}
STATISTICS = re.compile(r"(\d+) passing, (\d+) failing")


def schemathesis_figures(report: dict, label: str) -> dict:
    """Cases, operations and classified failures of one `st run --report json` document."""
    figures = {"cases": report["test_cases"]["generated"], "operations": (report.get("operations") or {}).get("tested", 0),
               "server_errors": 0, "schema_violations": 0, "failures": []}
    for group in report["failures"]:
        code, count = group["code"], group["count"]
        if code in SERVER_ERRORS:
            figures["server_errors"] += count
        elif code in SCHEMA_VIOLATIONS:
            figures["schema_violations"] += count
        operations = ", ".join(group["operations"][:4]) + (" ..." if len(group["operations"]) > 4 else "")
        figures["failures"].append(f"{label}: {code} {group['title']} x{count} ({operations})")
    for error in report["errors"]:
        figures["failures"].append(f"{label}: error {error['title']} x{error['count']}")
    if not report.get("complete", True) or (report.get("exit_code", 0) and not figures["failures"]):
        figures["failures"].append(f"{label}: schemathesis stopped ({report.get('stop_reason')}, exit {report.get('exit_code')})")
    return figures


def pytest_figures(junit: Path, output: str) -> dict:
    """Tests, failures and generated examples (Hypothesis's statistics) of the codec properties' pytest run."""
    failures, tests = [], 0
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            tests += 1
            for problem in [*case.findall("failure"), *case.findall("error")]:
                first = (problem.get("message") or "").splitlines()[:1]
                failures.append(f"codec properties: {case.get('name')}: {first[0][:200] if first else 'failed'}")
    else:
        failures.append("codec properties: pytest wrote no report (see codec-properties.log)")
    examples = sum(int(p) + int(f) for p, f in STATISTICS.findall(output))
    return {"tests": tests, "examples": examples, "failures": failures}


def write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


def markdown(report: dict) -> str:
    codec = report["codec_properties"]
    verdict = "nothing found" if not report["failures"] else f"{len(report['failures'])} failure group(s)"
    lines = [
        "# Fuzzing the gateway", "",
        f"Verdict: **{verdict}**. Finished {report['finished']} in {report['duration_s']:.0f} s, commit `{report['commit']}`.", "",
        "| figure | value |", "|---|---|",
        f"| operations (from /openapi.json) | {report['operations']} |",
        f"| examples per operation (fuzzing phase) | {report['examples_per_operation']} |",
        f"| HTTP test cases (examples, coverage and fuzzing phases) | {report['cases']} |",
        f"| server errors (5xx) | {report['server_errors']} |",
        f"| schema violations (an answer the document does not describe) | {report['schema_violations']} |",
        f"| codec property tests / generated examples | {codec['tests']} / {codec['examples']} |", "",
        "## Failures", "",
        *([f"- {line}" for line in report["failures"]] or ["None."]), "",
        "## Command", "", f"`{report['command']}`", "",
        "Schemathesis's own reports (every failing case with a curl line to replay it) are next to this file.", "",
    ]
    return "\n".join(lines)

// Renders /reports/parity and /reports/latency from the JSON the pipeline and `crossdeploy bench` write.
const name = location.pathname.split("/").pop();
const summary = document.getElementById("summary");
const head = document.querySelector("#table thead");
const body = document.querySelector("#table tbody");
const charts = document.getElementById("charts");
const num = (x, digits = 2) => (x === null || x === undefined) ? "—" : (Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(1) : x.toFixed(digits));

function table(columns, rows) {
  head.innerHTML = `<tr>${columns.map((c) => `<th>${c}</th>`).join("")}</tr>`;
  body.innerHTML = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
}

function chart(file, alt) {
  const img = document.createElement("img");
  img.src = `/v1/reports/${name}/${file}`; img.alt = alt; img.style.maxWidth = "100%";
  charts.append(img);
}

async function main() {
  document.getElementById("title").textContent = `${name} report`;
  const file = name === "parity" ? "parity.json" : "results.json";
  const response = await fetch(`/v1/reports/${name}/${file}`);
  const data = await response.json();
  if (!response.ok) { summary.textContent = data.error; document.body.dataset.ready = "yes"; return; }
  if (name === "parity") {
    summary.textContent = `${data.variants.length} variants checked on ${data.samples} test samples: ${data.passed ? "all pass" : "FAILURES: " + data.failures.join("; ")}. ` +
      `PyTorch vs Keras eager agreement: ${(data.cross_framework_agreement * 100).toFixed(2)} %.`;
    table(["variant", "pathway", "support", "max abs diff", "agreement", "accuracy", "parity"],
      data.variants.map((v) => [v.variant, v.pathway, v.support, num(v.max_abs, 6), v.agreement === null ? "—" : `${(v.agreement * 100).toFixed(2)} %`,
        `${(v.accuracy * 100).toFixed(2)} %`, v.variant === v.reference ? "reference" : (v.passed ? "pass" : "FAIL")]));
    chart("parity.png", "distribution of logit differences per variant");
  } else {
    summary.textContent = `${data.quick ? "Quick run" : "Run"} of ${new Date(data.created).toLocaleString()} on ${data.machine.cores} cores ` +
      `(${data.machine.processor}), git ${data.git_revision}, ${Math.round(data.duration_s)} s. Fastest pathway per scenario:`;
    table(["scenario", "fastest", "p50 ms", "runner-up", "p50 ms", "result"],
      data.verdicts.map((v) => [v.group, v.winner, num(v.winner_p50, 3), v.runner_up || "—", num(v.runner_up_p50, 3),
        v.tie ? `tie (within the noise) with ${v.tied_with.join(", ")}` : (v.margin === null ? "only one" : `wins by ${(v.margin * 100).toFixed(1)} %`)]));
    for (const [png, alt] of [["pathways.png", "in-process p50 per pathway"], ["latency_cdf.png", "latency CDF"],
      ["throughput_vs_concurrency.png", "throughput vs concurrency"], ["breakdown.png", "time breakdown per protocol"]]) chart(png, alt);
  }
  document.body.dataset.ready = "yes";
}

main();

// The page: draw -> 8x8 -> /v1/compare (every served variant) -> the ONNX variants again in the browser.
// Plain ES modules: one canvas, one table and two report pages do not need a framework.
import * as ort from "/static/vendor/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = "/static/vendor/";
ort.env.wasm.numThreads = 1; // no SharedArrayBuffer needed, so no cross-origin isolation headers

const draw = document.getElementById("draw");
const pen = draw.getContext("2d", { willReadFrequently: true });
const preview = document.getElementById("preview").getContext("2d");
const tbody = document.querySelector("#results tbody");
const status = document.getElementById("status");
const sessions = new Map();
let drawing = false;
let busy = null;

function clear() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, draw.width, draw.height);
  preview.clearRect(0, 0, 128, 128);
  document.getElementById("truth").textContent = "";
}

function position(event) {
  const box = draw.getBoundingClientRect();
  return [(event.clientX - box.left) * draw.width / box.width, (event.clientY - box.top) * draw.height / box.height];
}

draw.addEventListener("pointerdown", (event) => {
  drawing = true;
  draw.setPointerCapture(event.pointerId);
  pen.strokeStyle = "#fff"; pen.lineWidth = 18; pen.lineCap = pen.lineJoin = "round";
  pen.beginPath(); pen.moveTo(...position(event));
});
draw.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...position(event)); pen.stroke();
});
for (const name of ["pointerup", "pointercancel"]) {
  draw.addEventListener(name, () => {
    if (!drawing) return;
    drawing = false;
    const digit = toDigit();
    if (digit) predict(digit);
  });
}
document.getElementById("clear").addEventListener("click", () => { clear(); tbody.innerHTML = ""; });
document.getElementById("sample").addEventListener("click", async () => {
  const seed = new URLSearchParams(location.search).get("seed"); // ?seed=N makes the pick reproducible
  const answer = await (await fetch(`/v1/samples?count=1${seed === null ? "" : "&seed=" + seed}`)).json();
  const image = answer.images[0];
  clear();
  const cell = draw.width / 8;
  for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) {
    const v = Math.round(image[r][c] * 255 / 16);
    pen.fillStyle = `rgb(${v},${v},${v})`; pen.fillRect(c * cell, r * cell, cell, cell);
  }
  document.getElementById("truth").textContent = `true label: ${answer.labels[0]} (test sample #${answer.indices[0]})`;
  document.getElementById("truth").dataset.label = answer.labels[0];
  predict(image);
});

// The rule of serving/images.py: crop to the ink (> 25 % of the brightest), fit the longer side to 32 px,
// centre on 32x32, then each 4x4 block's mean ink x 16, rounded.
function toDigit() {
  const { data, width, height } = pen.getImageData(0, 0, draw.width, draw.height);
  let max = 0;
  for (let i = 0; i < data.length; i += 4) max = Math.max(max, data[i]);
  if (max < 26) return null;
  let top = height, left = width, bottom = -1, right = -1;
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    if (data[(y * width + x) * 4] > 0.25 * max) {
      top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
    }
  }
  const w = right - left + 1, h = bottom - top + 1, scale = 32 / Math.max(w, h);
  const small = document.createElement("canvas"); small.width = small.height = 32;
  const s = small.getContext("2d", { willReadFrequently: true });
  s.fillStyle = "#000"; s.fillRect(0, 0, 32, 32);
  s.imageSmoothingQuality = "high";
  const dw = Math.max(1, Math.round(w * scale)), dh = Math.max(1, Math.round(h * scale));
  s.drawImage(draw, left, top, w, h, Math.floor((32 - dw) / 2), Math.floor((32 - dh) / 2), dw, dh);
  const pixels = s.getImageData(0, 0, 32, 32).data;
  const image = [];
  for (let r = 0; r < 8; r++) {
    const row = [];
    for (let c = 0; c < 8; c++) {
      let sum = 0;
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) sum += pixels[((r * 4 + y) * 32 + c * 4 + x) * 4];
      row.push(Math.round(sum / 16 / 255 * 16));
    }
    image.push(row);
  }
  return image;
}

function showPreview(image) {
  for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) {
    const v = Math.round(image[r][c] * 255 / 16);
    preview.fillStyle = `rgb(${v},${v},${v})`; preview.fillRect(c * 16, r * 16, 16, 16);
  }
}

const softmax = (logits) => { const m = Math.max(...logits); const e = logits.map((v) => Math.exp(v - m)); const s = e.reduce((a, b) => a + b); return e.map((v) => v / s); };
const fmt = (x) => (x === null || x === undefined) ? "—" : (x === 0 ? "0" : x.toExponential(1));

function bars(probabilities) {
  const top = probabilities.indexOf(Math.max(...probabilities));
  return `<div class="bars">${probabilities.map((p, i) => `<span class="${i === top ? "top" : ""}" title="${i}: ${(p * 100).toFixed(1)} %" style="height:${Math.max(1, p * 24)}px"></span>`).join("")}</div>`;
}

function row(where, v, predicted, probabilities, diff, diffClass, ms, image) {
  const tr = document.createElement("tr");
  tr.dataset.variant = v.name; tr.dataset.where = where; tr.dataset.predicted = predicted; tr.dataset.precision = v.precision;
  if (diff !== null && diff !== undefined) tr.dataset.diff = diff;
  const support = v.support && v.support.status !== "active" ? `<div class="support">${v.support.status}</div>` : "";
  tr.innerHTML = `<td>${where}</td><td>${v.name}${support}</td><td class="chain">${v.pathway}</td><td class="pred">${predicted}</td>` +
    `<td>${probabilities ? bars(probabilities) : ""}</td><td class="${diffClass}">${fmt(diff)}</td><td>${ms.toFixed(2)}</td>`;
  if (image && v.reference && v.reference !== v.name) { // a converted variant: where does its chain leave the tolerance?
    const link = document.createElement("a");
    link.href = "#where"; link.className = "where"; link.textContent = "where?";
    link.title = "layer by layer, where this variant's conversion chain first leaves its tolerance, for this input";
    link.addEventListener("click", (event) => { event.preventDefault(); diagnose(v.name, image); });
    tr.querySelector(".chain").append(" ", link);
  }
  return tr;
}

function group(title) {
  const tr = document.createElement("tr"); tr.className = "group";
  tr.innerHTML = `<td colspan="7">${title}</td>`;
  return tr;
}

async function browserRun(v, image) {
  if (!sessions.has(v.name)) {
    const created = ort.InferenceSession.create(`/v1/artifacts/${v.name}/model.onnx`);
    created.catch(() => sessions.delete(v.name)); // a failed load is retried next time, not cached
    sessions.set(v.name, created);
  }
  const session = await sessions.get(v.name);
  const input = new ort.Tensor("float32", Float32Array.from(image.flat()), [1, 8, 8]);
  const started = performance.now();
  const result = await session.run({ [session.inputNames[0]]: input });
  const ms = performance.now() - started;
  return { logits: Array.from(result[session.outputNames[0]].data), ms };
}

// "where?": crossdeploy diverge on the server for this one input; one diagnosis at a time, kept per input.
let asked = 0; // the newest "where?" owns the panel: an older answer arriving late is dropped
async function diagnose(name, image) {
  const mine = ++asked;
  const panel = document.getElementById("where");
  panel.hidden = false; panel.dataset.ready = "no"; panel.dataset.variant = name;
  panel.querySelector("h2").textContent = `where ${name} leaves its tolerance`;
  const text = panel.querySelector(".verdicts"), plot = panel.querySelector("img");
  text.textContent = "following the chain layer by layer (a few seconds)…"; plot.hidden = true;
  let response, answer;
  try {
    response = await fetch(`/v1/where/${encodeURIComponent(name)}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image }) });
    answer = await response.json();
  } catch (error) {
    response = null; answer = { error: `no answer from the gateway: ${error}` };
  }
  if (mine !== asked) return;
  if (!response || !response.ok) {
    text.textContent = answer.error || `the gateway answered ${response.status}`;
  } else {
    text.innerHTML = "";
    const chain = document.createElement("p"); chain.textContent = `chain: ${answer.chain.join(" → ")}`;
    const list = document.createElement("ul");
    answer.verdicts.forEach((verdict, i) => { // a divergence names its hop; the other verdicts get its name here
      const li = document.createElement("li");
      li.textContent = verdict.startsWith("first divergence") ? verdict : `${answer.hops[i].name}: ${verdict}`;
      list.append(li);
    });
    text.append(chain, list);
    plot.src = answer.plot; plot.hidden = false;
    await plot.decode().catch(() => {});
  }
  if (mine !== asked) return;
  panel.dataset.ready = "yes";
  panel.scrollIntoView({ block: "nearest" });
}

async function predict(image) {
  showPreview(image);
  document.body.dataset.ready = "no";
  const mine = Symbol();
  busy = mine;
  status.textContent = "asking every variant…";
  const response = await fetch("/v1/compare", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image }) });
  const answer = await response.json();
  if (busy !== mine) return; // a newer drawing superseded this one
  if (!response.ok) { status.textContent = answer.error; document.body.dataset.ready = "yes"; return; }
  tbody.innerHTML = "";
  const names = { pytorch: "PyTorch source", keras: "Keras source" };
  const models = [...new Set(answer.variants.map((v) => v.model))]; // variants registered by `crossdeploy matrix` too
  for (const [model, source] of models.flatMap((m) => ["pytorch", "keras"].map((s) => [m, s]))) {
    const rows = answer.variants.filter((v) => v.model === model && v.source_framework === source);
    if (!rows.length) continue;
    tbody.append(group(models.length > 1 ? `${model} · ${names[source]}` : names[source]));
    for (const v of rows) {
      if (v.status !== "ok") { tbody.append(row("server", { ...v, pathway: v.error }, "—", null, null, "bad", 0)); continue; }
      const cls = v.within_tolerance === true ? "ok" : v.within_tolerance === false ? "bad" : "na";
      tbody.append(row("server", v, v.predicted[0], v.probabilities[0], v.max_abs_diff_vs_reference, cls, v.inference_ms, image));
    }
  }
  const agreement = answer.agreement;
  const answered = answer.variants.filter((v) => v.status === "ok").length;
  document.getElementById("agreement").textContent = agreement.all_agree
    ? `all ${answered} answering variants agree: ${agreement.majority[0]}`
    : `disagreement: majority says ${agreement.majority[0]}, ${agreement.disagreeing.join(", ")} say otherwise`;
  const onnx = answer.variants.filter((v) => v.status === "ok" && v.format === "onnx");
  if (onnx.length) tbody.append(group("In this browser (onnxruntime-web, wasm)"));
  for (const v of onnx) {
    try {
      const { logits, ms } = await browserRun(v, image);
      if (busy !== mine) return; // a newer drawing owns the table now
      const server = Object.values(v.outputs)[0][0];
      const diff = Math.max(...logits.map((x, i) => Math.abs(x - server[i])));
      const predicted = logits.indexOf(Math.max(...logits));
      tbody.append(row("browser", v, predicted, softmax(logits), diff, diff <= 1e-4 ? "ok" : "bad", ms));
    } catch (error) {
      if (busy !== mine) return;
      tbody.append(row("browser", { ...v, pathway: String(error) }, "—", null, null, "bad", 0));
    }
  }
  status.textContent = `${answer.variants.length} server variants and ${onnx.length} browser runs answered`;
  document.body.dataset.ready = "yes";
}

clear();

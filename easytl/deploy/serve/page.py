"""The page ``GET /`` serves: drop or choose images, see label, top-k and Grad-CAM.

One self-contained HTML document (inline CSS and JavaScript, system fonts, no
remote scripts), so it works on a machine with no internet access.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>easytl model</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a;
         background: #f5f6f8; }
  header { background: #1d3557; color: #fff; padding: 14px 24px; }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 4px 0 0; font-size: 13px; opacity: .85; }
  main { max-width: 1000px; margin: 0 auto; padding: 20px 24px; }
  #drop { border: 2px dashed #8a96a3; border-radius: 10px; padding: 28px; text-align: center;
          background: #fff; cursor: pointer; }
  #drop.over { border-color: #1d3557; background: #eef3fa; }
  .options { margin: 12px 0; font-size: 14px; display: flex; gap: 18px; align-items: center; }
  .card { display: flex; gap: 16px; background: #fff; border-radius: 10px; padding: 14px;
          margin: 12px 0; box-shadow: 0 1px 3px rgba(0,0,0,.12); flex-wrap: wrap; }
  .card img { width: 224px; height: 224px; object-fit: contain; background: #eee; border-radius: 6px; }
  .info { flex: 1; min-width: 220px; }
  .name { font-size: 12px; color: #5c6670; word-break: break-all; }
  .label { font-size: 22px; font-weight: 600; margin: 6px 0 10px; }
  .label.unknown { color: #b23a48; }
  .bar { display: flex; align-items: center; gap: 8px; font-size: 13px; margin: 3px 0; }
  .bar span.class { width: 120px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { flex: 1; background: #e7eaee; border-radius: 4px; height: 12px; }
  .bar .fill { background: #457b9d; height: 12px; border-radius: 4px; }
  .error { color: #b23a48; font-weight: 600; }
  figure { margin: 0; text-align: center; font-size: 12px; color: #5c6670; }
</style>
</head>
<body>
<header><h1>easytl model</h1><p id="about">loading model information&hellip;</p></header>
<main>
  <label id="drop" for="files">Drop images here, or click to choose files
    <input id="files" type="file" accept="image/*" multiple hidden>
  </label>
  <div class="options">
    <label>top-k <input id="topk" type="number" min="1" value="5" style="width:4em"></label>
    <label><input id="reject" type="checkbox"> label images unlike the training set "unknown"</label>
    <label><input id="gradcam" type="checkbox" checked> Grad-CAM</label>
  </div>
  <div id="results"></div>
</main>
<script>
"use strict";
const results = document.getElementById("results");
const drop = document.getElementById("drop");
const input = document.getElementById("files");

function element(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function detail(response) {
  try { return (await response.json()).detail || response.statusText; }
  catch (e) { return response.statusText; }
}

fetch("model").then(r => r.json()).then(m => {
  document.getElementById("about").textContent = m.classes.length + " classes (" +
    m.classes.slice(0, 8).join(", ") + (m.classes.length > 8 ? ", ..." : "") + "), " +
    m.backbone + " at " + m.input_size + " px, easytl " + m.easytl_version;
  document.getElementById("reject").disabled = !m.reject_unknown;
}).catch(() => {});

async function show(file) {
  const card = element("div", "card");
  const picture = element("figure");
  const img = element("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  picture.append(img, element("figcaption", "", "image"));
  const info = element("div", "info");
  info.append(element("div", "name", file.name), element("div", "label", "\\u2026"));
  card.append(picture, info);
  results.prepend(card);
  const form = new FormData();
  form.append("files", file, file.name);
  const params = new URLSearchParams({ top_k: document.getElementById("topk").value || "5",
                                       reject_unknown: document.getElementById("reject").checked });
  const label = info.querySelector(".label");
  try {
    const response = await fetch("predict?" + params, { method: "POST", body: form });
    if (!response.ok) throw new Error(await detail(response));
    const p = (await response.json()).predictions[0];
    if (p.error !== undefined) throw new Error(p.error);  // a row the server could not answer
    const text = p.labels !== undefined ? (p.labels.join(", ") || "(no label)") : String(p.label);
    label.textContent = text;
    if (p.unknown) label.classList.add("unknown");
    for (const t of p.top_k) {
      const bar = element("div", "bar");
      const track = element("div", "track");
      const fill = element("div", "fill");
      fill.style.width = (100 * t.probability).toFixed(1) + "%";
      track.append(fill);
      bar.append(element("span", "class", String(t.label)), track,
                 element("span", "", (100 * t.probability).toFixed(1) + "%"));
      info.append(bar);
    }
    if (p.novelty !== undefined) info.append(element("div", "name", "novelty " + p.novelty.toFixed(2)));
  } catch (error) {
    label.textContent = "error";
    info.append(element("div", "error", error.message));
    return;
  }
  if (!document.getElementById("gradcam").checked) return;
  try {
    const response = await fetch("explain", { method: "POST", body: form });
    if (!response.ok) throw new Error(await detail(response));
    const e = await response.json();
    const overlay = element("figure");
    const cam = element("img", "overlay");
    cam.src = e.overlay;
    cam.alt = "Grad-CAM for " + e.label;
    overlay.append(cam, element("figcaption", "", "Grad-CAM: " + e.label));
    card.append(overlay);
  } catch (error) {
    info.append(element("div", "error", "Grad-CAM: " + error.message));
  }
}

function showAll(files) {
  for (const file of Array.from(files)) show(file);
}
input.addEventListener("change", () => { showAll(input.files); input.value = ""; });
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {
  e.preventDefault();
  drop.classList.remove("over");
  showAll(e.dataTransfer.files);
});
</script>
</body>
</html>
"""

// The console's only script: live views (server-sent events), boxes over frames, and forms posted with the
// CSRF header. No build step, no library.
"use strict";

function csrfToken() {
  const m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// COCO's skeleton by keypoint name (a pose detector's people); other keypoints (a face's) are drawn as dots only
const SKELETON = [
  ["left_shoulder", "right_shoulder"], ["left_shoulder", "left_elbow"], ["left_elbow", "left_wrist"],
  ["right_shoulder", "right_elbow"], ["right_elbow", "right_wrist"], ["left_shoulder", "left_hip"],
  ["right_shoulder", "right_hip"], ["left_hip", "right_hip"], ["left_hip", "left_knee"], ["left_knee", "left_ankle"],
  ["right_hip", "right_knee"], ["right_knee", "right_ankle"], ["nose", "left_eye"], ["nose", "right_eye"],
  ["left_eye", "left_ear"], ["right_eye", "right_ear"],
];
const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawSkeletons(layer, detections) {
  const svg = svgElement("svg", { class: "skeletons", viewBox: "0 0 1 1", preserveAspectRatio: "none" });
  for (const d of detections) {
    const at = new Map((d.keypoints || []).map(([name, x, y]) => [name, [x, y]]));
    if (!at.size) continue;
    const person = svgElement("g", { "data-label": d.label });
    for (const [a, b] of SKELETON) {
      if (!at.has(a) || !at.has(b)) continue;
      const [[x1, y1], [x2, y2]] = [at.get(a), at.get(b)];
      person.append(svgElement("line", { x1, y1, x2, y2, "data-bone": `${a}-${b}` }));
    }
    for (const [name, [x, y]] of at) {
      const dot = svgElement("line", { x1: x, y1: y, x2: x, y2: y, class: "joint" });
      dot.append(Object.assign(svgElement("title", {}), { textContent: name }));
      person.append(dot);
    }
    svg.append(person);
  }
  if (svg.childNodes.length) layer.append(svg);
}

function drawBoxes(layer, detections) {
  layer.replaceChildren();
  drawSkeletons(layer, detections);
  for (const d of detections) {
    const [x0, y0, x1, y1] = d.box;
    const box = document.createElement("div");
    box.className = "box" + (d.identity && d.identity !== "unknown" ? " known" : "");
    Object.assign(box.style, {
      left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%`,
    });
    const tag = document.createElement("span");
    const who = d.identity && d.identity !== "unknown" ? d.identity : d.text || d.label;
    tag.textContent = `${who} ${Math.round(d.score * 100)}%`;
    box.append(tag);
    layer.append(box);
  }
}

function frameUrl(cam) {
  const f = cam.frame;
  return f ? `/frame/${f.partition}/${f.offset}?camera=${encodeURIComponent(cam.camera_id)}&sequence=${cam.sequence}&ts=${cam.capture_ts_ms}` : null;
}

function showCamera(card, cam) {
  const view = card.querySelector(".view");
  for (const el of card.querySelectorAll("[data-field]")) {
    const v = cam[el.dataset.field];
    el.textContent = v === null || v === undefined ? "–" : v;
    if (el.dataset.field === "state") el.className = `state state-${v || "unknown"}`;
  }
  if (!view || cam.sequence === undefined || String(cam.sequence) === view.dataset.sequence) return;
  const url = frameUrl(cam);
  if (!url) return;
  // the frame and its boxes change together, once the new frame has loaded
  const next = new Image();
  next.onload = () => {
    view.querySelector("img.frame").src = url;
    drawBoxes(view.querySelector(".boxes"), cam.detections);
    view.dataset.sequence = String(cam.sequence);
    view.dataset.pts = cam.pts_ms === null || cam.pts_ms === undefined ? "" : String(cam.pts_ms);
  };
  next.src = url;
}

function startLive(root) {
  const camera = root.dataset.live;
  const source = new EventSource("/live" + (camera ? `?camera=${encodeURIComponent(camera)}` : ""));
  source.onmessage = (msg) => {
    for (const cam of JSON.parse(msg.data).cameras) {
      const card = root.querySelector(`[data-camera="${CSS.escape(cam.camera_id)}"]`);
      if (card) showCamera(card, cam);
      else if (!camera) location.reload(); // a new camera: the grid is rendered again
    }
  };
}

function postForms() {
  for (const form of document.querySelectorAll("form[data-post]")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
      const out = form.querySelector(".result");
      if (out) out.textContent = "…";
      const resp = await fetch(form.action, {
        method: "POST", body: new FormData(form), headers: { "x-csrftoken": csrfToken() }, credentials: "same-origin",
      });
      let body = {};
      try { body = await resp.json(); } catch (e) { body = { error: `${resp.status} ${resp.statusText}` }; }
      if (resp.ok) {
        if (out) out.textContent = "done";
        if (form.dataset.then) location.assign(form.dataset.then);
      } else if (out) {
        out.textContent = body.error || `refused (${resp.status})`;
        out.className = "result error";
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const layer of document.querySelectorAll(".boxes[data-detections]")) {
    drawBoxes(layer, JSON.parse(layer.dataset.detections));
  }
  const live = document.querySelector("[data-live]");
  if (live) startLive(live);
  postForms();
});

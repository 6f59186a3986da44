// The console's only script: live views (server-sent events), boxes over frames, and forms posted with the
// CSRF header. No build step, no library.
"use strict";

function csrfToken() {
  const m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

function drawBoxes(layer, detections) {
  layer.replaceChildren();
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

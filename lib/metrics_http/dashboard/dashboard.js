// What both dashboards share (zmqkit-queue, zmqkit-forwarder): served at /dashboard.js.
// A page defines render(stats) and calls dashboard.start(render, "the device").
"use strict";
const $ = (id) => document.getElementById(id);

const dashboard = {
  // The value at "a.b.c" in obj, or undefined.
  get(obj, path) { return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj); },
  text(v) { return v === undefined || v === null ? "–" : String(v); },
  duration(ms) {
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  },
  cell(tr, value, cls, attrs) {
    const td = document.createElement("td");
    td.textContent = dashboard.text(value);
    if (cls) td.className = cls;
    for (const [k, v] of Object.entries(attrs || {})) td.setAttribute(k, v);
    tr.appendChild(td);
    return td;
  },
  // Every [data-stat="a.b"] element shows that field; #uptime the uptime.
  fill(st) {
    for (const el of document.querySelectorAll("[data-stat]")) el.textContent = dashboard.text(dashboard.get(st, el.dataset.stat));
    $("uptime").textContent = dashboard.duration(st.uptime_ms);
  },
  // Rates over the last 120 polls on canvas #rates: points are [uptime_ms, rate, rate...], one colour per rate.
  history: [],
  plot(point, colors) {
    const history = dashboard.history;
    history.push(point);
    if (history.length > 120) history.shift();
    const c = $("rates"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (history.length < 2) return;
    const top = Math.max(1, ...history.map((h) => Math.max(...h.slice(1))));
    const t0 = history[0][0], t1 = history[history.length - 1][0];
    const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (c.width - 2) + 1;
    const y = (v) => c.height - 4 - (v / top) * (c.height - 16);
    colors.forEach((color, i) => {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      history.forEach((h, k) => (k ? g.lineTo(x(h[0]), y(h[i + 1])) : g.moveTo(x(h[0]), y(h[i + 1]))));
      g.stroke();
    });
    g.fillStyle = "#6b7483";
    g.font = "11px sans-serif";
    g.fillText("max " + top.toFixed(1) + "/s", 4, 11);
  },
  // Reads api/stats once a second and renders it; body[data-rendered] counts renders (for tests).
  start(render, who) {
    async function poll() {
      try {
        const res = await fetch("api/stats", { cache: "no-store" });
        if (!res.ok) throw new Error("HTTP " + res.status);
        render(await res.json());
        document.body.setAttribute("data-rendered", String(Number(document.body.getAttribute("data-rendered") || 0) + 1));
      } catch (e) {
        $("state").textContent = "cannot reach " + who + ": " + e.message;
        $("state").className = "error";
      }
      setTimeout(poll, 1000);
    }
    poll();
  },
};

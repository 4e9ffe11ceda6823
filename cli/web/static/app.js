// Live updates of the dashboard, over the server's events
// (/api/v1/events): the progress of the running pass, and the sources and
// passes again when one ends. The pages work without it.
"use strict";
(function () {
  if (!document.getElementById("progress") || !window.EventSource) return;
  const counts = (s) => `${s.listed} listed · ${s.fetched} fetched · ${s.added} added · ${s.updated} updated · ${s.deleted} deleted · ${s.unchanged} unchanged` + (s.failed ? ` · ${s.failed} failed` : "");
  const show = (p) => {
    const progress = document.getElementById("progress");
    progress.replaceChildren();
    const head = document.createElement("p");
    head.textContent = `pass ${p.n} running, ${p.duration_ms} ms so far`;
    progress.append(head);
    for (const [name, s] of Object.entries(p.sources || {})) {
      const line = document.createElement("div");
      line.textContent = `${name}: ${counts(s)}`;
      progress.append(line);
    }
  };
  const reload = async () => {
    const res = await fetch(location.pathname, { headers: { Accept: "text/html" } });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    for (const id of ["live-sections", "progress"]) {
      const fresh = doc.getElementById(id), here = document.getElementById(id);
      if (fresh && here) here.replaceWith(fresh);
    }
    document.body.dataset.refreshed = String(Date.now());
  };
  // A page the browser kept in its back/forward cache is shown as it
  // was: fetch it afresh.
  window.addEventListener("pageshow", (e) => { if (e.persisted) reload(); });
  const events = new EventSource("/api/v1/events");
  events.addEventListener("pass_started", (e) => show(JSON.parse(e.data)));
  events.addEventListener("pass_progress", (e) => show(JSON.parse(e.data)));
  events.addEventListener("pass_finished", () => { reload(); });
  events.addEventListener("row_failed", () => {});
})();

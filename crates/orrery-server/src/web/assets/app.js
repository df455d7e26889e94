// Orrery's web app: live regions. Pages work without this script; with it
// they follow what happens without reloading.
"use strict";
(function () {
  const live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { "X-Orrery-Fragment": "1" }, credentials: "same-origin" });
      if (r.ok) {
        const main = document.getElementById("live");
        const open = new Set([...main.querySelectorAll("details[id][open]")].map(d => d.id));
        const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.testid;
        main.innerHTML = await r.text();
        for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
        if (focused) { const f = main.querySelector('[data-testid="' + focused + '"]'); if (f) f.focus(); }
        document.dispatchEvent(new CustomEvent("orrery:refreshed"));
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const es = new EventSource("/app/events?" + live);
  es.addEventListener("change", refresh);
})();

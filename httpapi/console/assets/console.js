// cardvault console: follows the progress of jobs under way. Each element
// with data-poll names a JSON endpoint; the script polls it, updates the
// <progress> bar and the [data-field] texts inside the element, stops when
// the job has ended, and reloads a page marked data-reload-on-end once the
// job it shows has ended (so its ledger is complete). No inline script or
// style is needed: the Content-Security-Policy allows neither.
"use strict";

(function () {
  const interval = 500;

  function update(el, p) {
    const bar = el.querySelector("progress");
    if (bar) {
      bar.max = Math.max(p.total, 1);
      bar.value = p.total > 0 ? p.done : (p.ended ? 1 : 0);
    }
    el.querySelectorAll("[data-field]").forEach(function (f) {
      const v = p[f.dataset.field];
      f.textContent = v === undefined || v === null ? "" : String(v);
    });
    el.dataset.status = p.status;
    el.dataset.ended = String(p.ended);
  }

  function follow(el) {
    const url = el.dataset.poll;
    async function tick() {
      let res;
      try {
        res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      } catch (e) {
        setTimeout(tick, interval * 4);
        return;
      }
      if (res.status === 401) {
        window.location.assign("/console/login?ended=1");
        return;
      }
      if (!res.ok) {
        setTimeout(tick, interval * 4);
        return;
      }
      const p = await res.json();
      update(el, p);
      if (!p.ended) {
        setTimeout(tick, interval);
        return;
      }
      if (el.closest("[data-reload-on-end]")) {
        window.location.reload();
      }
    }
    setTimeout(tick, interval);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(function (el) {
      if (el.dataset.ended !== "true") {
        follow(el);
      }
    });
  });
})();

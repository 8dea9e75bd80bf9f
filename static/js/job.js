/*
 * rlhf-studio: the training job page. While the job is queued or running, fetch the
 * server-rendered live part of the page every two seconds and swap it in; stop when the
 * job has ended. The fragment comes from our own origin, rendered with Django's escaping.
 */
(() => {
  "use strict";
  const live = document.getElementById("job-live");
  if (!live || live.dataset.active !== "true") return;
  const POLL_MS = 2000;

  async function refresh() {
    try {
      const response = await fetch(live.dataset.fragmentUrl, {
        credentials: "same-origin", headers: { Accept: "text/html" },
      });
      if (response.ok) {
        const html = await response.text();
        const parsed = new DOMParser().parseFromString(html, "text/html");
        live.replaceChildren(...parsed.body.childNodes);
        const status = document.getElementById("job-status");
        if (status && !["queued", "running"].includes(status.textContent.trim())) return;
      }
    } catch (error) {
      // offline for a moment: try again at the next tick
    }
    setTimeout(refresh, POLL_MS);
  }
  setTimeout(refresh, POLL_MS);
})();

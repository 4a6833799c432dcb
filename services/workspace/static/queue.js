// Keeps the queue table current without reloading the page: every few seconds it asks
// /queue/rows (with the page's own filters) for the rows, already rendered and escaped by the
// server, and for the counts per queue. A signed-out session goes back to the sign-in page.
(function () {
  "use strict";

  const table = document.getElementById("queue");
  if (!table || !table.tBodies.length) {
    return;
  }
  const body = table.tBodies[0];
  const state = document.getElementById("refresh-state");
  const every = parseInt(table.dataset.refreshMs, 10) || 5000;
  let busy = false;
  let shown = null; // the rows HTML last put in the table
  let timer = null;

  function say(text) {
    if (state) {
      state.textContent = text;
    }
  }

  function showCounts(counts) {
    for (const [queue, count] of Object.entries(counts || {})) {
      for (const cell of document.querySelectorAll("#queue-counts [data-count]")) {
        if (cell.dataset.count === queue) {
          cell.textContent = String(count);
        }
      }
    }
  }

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const answer = await fetch("/queue/rows" + window.location.search, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Accept": "application/json" },
      });
      if (answer.status === 401) {
        window.clearInterval(timer);
        const here = window.location.pathname + window.location.search;
        window.location.assign("/login?next=" + encodeURIComponent(here));
        return;
      }
      if (!answer.ok) {
        throw new Error("HTTP " + answer.status);
      }
      const data = await answer.json();
      // Rows are replaced only when they changed, and not under someone's keyboard focus or
      // selection: replacing them would throw the focus back to the top of the page.
      const focusInside = body.contains(document.activeElement);
      if (data.rows_html !== shown && !focusInside) {
        body.innerHTML = data.rows_html;
        shown = data.rows_html;
      }
      showCounts(data.counts);
      say("Updated " + new Date().toLocaleTimeString());
    } catch (problem) {
      say("Could not refresh the queue (" + problem.message + "); retrying.");
    } finally {
      busy = false;
    }
  }

  timer = window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
})();

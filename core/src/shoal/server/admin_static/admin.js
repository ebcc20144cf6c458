// Shoal admin page: live updates (Server-Sent Events) and actions without a reload.
// Every request goes to this same server; nothing is fetched from anywhere else.
"use strict";
(() => {
  const main = document.getElementById("state");
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  const csrf = document.querySelector('meta[name="shoal-csrf"]').content;
  let last = main.innerHTML;

  function setLive(text) {
    if (live.textContent !== text) live.textContent = text;
  }

  function apply(html) {
    if (html === last) return;
    // Keep keyboard focus on the same control across the update.
    const focused = document.activeElement && document.activeElement.id;
    main.innerHTML = html;  // rendered and escaped by the server
    last = html;
    if (focused) {
      const el = document.getElementById(focused);
      if (el) el.focus();
    }
  }

  const events = new EventSource("/events");
  events.addEventListener("state", (e) => { apply(e.data); setLive("Live"); });
  events.addEventListener("end", () => { events.close(); location.reload(); });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) {
      location.reload();  // signed out (token rotated): show the sign-in form
    } else {
      setLive("Reconnecting…");
    }
  };

  main.addEventListener("submit", async (ev) => {
    const form = ev.target;
    ev.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const body = new URLSearchParams(new FormData(form));
    let text;
    try {
      const r = await fetch("/action", {
        method: "POST", body, credentials: "same-origin",
        headers: {"X-Shoal-CSRF": csrf, "Accept": "application/json"},
      });
      const j = await r.json();
      text = j.ok ? j.message : j.error;
    } catch (e) {
      text = "The server did not answer.";
    }
    notice.textContent = text;
  });
})();

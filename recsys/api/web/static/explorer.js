// recsys explorer: like/dislike without a page reload, and two small conveniences. No build step, no libraries.
(function () {
  "use strict";

  function ids(root) {
    return Array.from(root.querySelectorAll("#recs .card")).map(function (c) { return c.dataset.itemId; });
  }

  async function sendFeedback(form, button) {
    const live = document.getElementById("live");
    const before = new Set(ids(live));
    const data = new FormData(form);
    live.classList.add("busy");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST", body: data, headers: { "X-Explorer": "fetch" }, credentials: "same-origin"
      });
      const html = await response.text();
      if (!response.ok) {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const msg = doc.getElementById("error-message");
        throw new Error(msg ? msg.textContent : "HTTP " + response.status);
      }
      live.innerHTML = html;
      live.dataset.version = String(Number(live.dataset.version || "0") + 1);
      live.querySelectorAll("#recs .card").forEach(function (card) {
        if (!before.has(card.dataset.itemId)) { card.classList.add("fresh"); }
      });
    } catch (err) {
      // one message at a time: the last failure replaces the one before
      live.querySelectorAll(":scope > p.warn").forEach(function (old) { old.remove(); });
      const p = document.createElement("p");
      p.className = "warn";
      p.textContent = "Could not record that: " + err.message;
      live.prepend(p);
      button.disabled = false;
    } finally {
      live.classList.remove("busy");
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.matches("#live form.fb")) {
      event.preventDefault();
      sendFeedback(form, event.submitter || form.querySelector("button"));
    } else if (form.matches("[data-user-jump]")) {
      event.preventDefault();
      const id = form.querySelector("input[name=user]").value.trim();
      if (id) { window.location.href = "/users/" + encodeURIComponent(id); }
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) { event.target.form.submit(); }
  });
})();

// recsys explorer: like/dislike without a page reload, and two small conveniences. No build step, no libraries.
(function () {
  "use strict";

  function ids(root) {
    return Array.from(root.querySelectorAll("#recs .card")).map(function (c) { return c.dataset.itemId; });
  }

  const LIKE_TIMEOUT_S = 30;  // a like the server or a proxy holds longer is given up: the list is usable again

  // What a newcomer can act on, instead of "Failed to fetch" or "HTTP 502".
  function failure(err, response, action) {
    if (err && err.name === "AbortError") {
      return "the server did not answer within " + LIKE_TIMEOUT_S + " s. The " + action + " may still be stored: " +
        "reload the page to see";
    }
    if (err instanceof TypeError) {
      return "the server did not answer: is `recsys serve` (or `make demo`) still running?";
    }
    if (response) {
      return "the server answered " + response.status + (response.statusText ? " " + response.statusText : "") +
        " instead of the page: try again in a moment";
    }
    return err.message;
  }

  // Keyboard users go on where they were: the same button if its item is still listed, else the one at the same
  // place, else the message (replacing the list would otherwise drop the focus to the top of the page).
  function refocus(live, itemId, action, index) {
    const buttons = Array.from(live.querySelectorAll("#recs button[data-action='" + action + "']"));
    const same = buttons.find(function (b) { return b.closest(".card").dataset.itemId === itemId; });
    const target = same || buttons[Math.min(index, buttons.length - 1)] || document.getElementById("flash");
    if (target) { target.focus(); }
  }

  // Likes are sent one at a time, in the order pressed: each answer then holds every like before it. Two sent at
  // once could be answered out of order, and the older list would replace the newer one (a like pressed with the
  // keyboard while the list is dimmed: the dimming stops only the mouse).
  let queue = Promise.resolve();
  const pending = new Set();  // "like item-1": pressed, not answered yet; pressing it again sends nothing

  function pendingKey(form, action) { return action + " " + form.querySelector("input[name=item_id]").value; }

  function holdPending(live) {  // a fresh list keeps the buttons of the likes still waiting their turn disabled
    live.querySelectorAll("#recs form.fb").forEach(function (f) {
      const b = f.querySelector("button[data-action]");
      if (b && pending.has(pendingKey(f, b.dataset.action))) { b.disabled = true; }
    });
  }

  function queueFeedback(form, button) {
    const live = document.getElementById("live");
    const action = button.dataset.action || "like";
    const key = pendingKey(form, action);
    if (pending.has(key)) { return; }
    pending.add(key);
    const data = new FormData(form);  // taken now: an earlier answer replaces the form
    const hadFocus = document.activeElement === button;
    const index = Array.from(live.querySelectorAll("#recs button[data-action='" + action + "']")).indexOf(button);
    live.classList.add("busy");
    live.setAttribute("aria-busy", "true");
    button.disabled = true;
    const send = function () {
      return sendFeedback(live, form.action, data, button, { action: action, hadFocus: hadFocus, index: index });
    };
    queue = queue.then(send, send).finally(function () {  // sent after the one before, however that one ended
      pending.delete(key);
      if (!pending.size) {
        live.classList.remove("busy");
        live.removeAttribute("aria-busy");
      }
    });
  }

  async function sendFeedback(live, url, data, button, how) {
    const announce = document.getElementById("announce");
    const before = new Set(ids(live));
    const itemId = data.get("item_id");
    const stop = new AbortController();
    const timer = setTimeout(function () { stop.abort(); }, LIKE_TIMEOUT_S * 1000);
    let response = null;
    try {
      response = await fetch(url, {
        method: "POST", body: data, headers: { "X-Explorer": "fetch" }, credentials: "same-origin",
        signal: stop.signal
      });
      const html = await response.text();
      if (!response.ok) {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const msg = doc.getElementById("error-message");
        if (msg) { response = null; }  // the server's own words: shown as they are
        const err = new Error(msg ? msg.textContent : "HTTP " + response.status);
        const login = doc.getElementById("login-link");  // no login, or an expired one: where to log in again
        err.login = login ? login.getAttribute("href") : null;
        throw err;
      }
      // the focus is still on the pressed button (or was dropped with it): not moved if the user went on meanwhile
      const keepFocus = how.hadFocus && [button, document.body, null].includes(document.activeElement);
      live.innerHTML = html;
      live.dataset.version = String(Number(live.dataset.version || "0") + 1);
      holdPending(live);
      live.querySelectorAll("#recs .card").forEach(function (card) {
        if (before.has(card.dataset.itemId)) { return; }
        card.classList.add("fresh");  // the ring, and a word for those who cannot tell it by its colour
        const badge = document.createElement("span");
        badge.className = "tag fresh-badge";
        badge.textContent = "new";
        card.querySelector(".card-body").prepend(badge);
      });
      const flash = document.getElementById("flash");
      if (announce && flash) { announce.textContent = flash.textContent; }
      if (keepFocus) { refocus(live, itemId, how.action, Math.max(how.index, 0)); }
    } catch (err) {
      // one message at a time: the last failure replaces the one before
      live.querySelectorAll(":scope > p.warn").forEach(function (old) { old.remove(); });
      const p = document.createElement("p");
      p.className = "warn";
      p.setAttribute("role", "alert");
      p.textContent = "Could not record that: " + failure(err, response, how.action);
      if (err.login) {
        const a = document.createElement("a");
        a.href = err.login;
        a.id = "login-again";
        a.textContent = "Log in again";
        p.append(" ", a);
      }
      live.prepend(p);
      button.disabled = false;
      if (how.hadFocus && button.isConnected) { button.focus(); }
    } finally {
      clearTimeout(timer);
    }
  }

  // A search can take seconds (the first one after a start loads the text model): say it is under way.
  function markBusy(form) {
    const button = form.querySelector("button[type=submit]");
    form.setAttribute("aria-busy", "true");
    form.classList.add("busy");
    if (button) {
      button.dataset.label = button.dataset.label || button.textContent;
      button.textContent = "Searching…";
      setTimeout(function () { button.disabled = true; }, 0);  // after the form's data is taken
    }
    const note = document.getElementById("search-status");
    if (note) { note.textContent = "Searching… the first search after the server starts takes a few seconds."; }
  }

  function clearBusy() {  // the page comes back from the history cache as it was left
    document.querySelectorAll("form[aria-busy]").forEach(function (form) {
      form.removeAttribute("aria-busy");
      form.classList.remove("busy");
      const button = form.querySelector("button[type=submit]");
      if (button && button.dataset.label) { button.textContent = button.dataset.label; button.disabled = false; }
    });
    const note = document.getElementById("search-status");
    if (note) { note.textContent = ""; }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.matches("#live form.fb")) {
      event.preventDefault();
      queueFeedback(form, event.submitter || form.querySelector("button"));
    } else if (form.matches("[data-user-jump]")) {
      event.preventDefault();
      const id = form.querySelector("input[name=user]").value.trim();
      if (id) { window.location.href = "/users/" + encodeURIComponent(id); }
    } else if (form.matches("[data-search]") && !event.defaultPrevented) {
      markBusy(form);
    }
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    // a user page kept by the back/forward cache shows the history and list from before the likes made since
    if (document.getElementById("live")) { window.location.reload(); } else { clearBusy(); }
  });

  // A picture the server offers but the browser cannot decode (no status recorded yet: `recsys embed` has not
  // looked at it) becomes the "no image" tile instead of a broken-image icon; its alt text stays its name.
  function noImage(img) {
    if (!img.matches("img.thumb, img.mini, img.hero") || !img.parentNode) { return; }
    const tile = document.createElement("div");
    tile.className = img.className + " noimg";
    tile.setAttribute("role", "img");
    tile.setAttribute("aria-label", "no image" + (img.alt ? ": " + img.alt : ""));
    tile.textContent = "no image";
    img.replaceWith(tile);
  }
  document.addEventListener("error", function (event) {
    if (event.target instanceof HTMLImageElement) { noImage(event.target); }
  }, true);
  document.querySelectorAll("img").forEach(function (img) {  // failed before this script ran
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) { noImage(img); }
  });

  // After Apply, the diversity list has the focus again (the form's address ends in #diversity).
  if (window.location.hash === "#diversity") {
    const select = document.getElementById("diversity");
    if (select) { select.focus(); }
  }
})();

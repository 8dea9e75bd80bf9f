/*
 * rlhf-studio: what the labeler's pages share (rank.js, rate.js): idempotency keys, drafts in
 * localStorage, the active-time counter, JSON requests with their refusals in words, a submit
 * that retries an unanswered request with the same key, skips, lease renewal, the key help
 * overlay. Load it before the page's own script (both `defer`: they run in order).
 *
 * Plain ES2020, no dependencies; it only defines window.rlhfLabeling and touches no page.
 */
(() => {
  "use strict";

  const MAX_TIME_SPENT_MS = 24 * 3600 * 1000;
  const MAX_RETRY_DELAY_MS = 30000;

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  function element(tag, { className, text, attrs } = {}) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; getRandomValues does not.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    const parts = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)];
    return parts.join("-");
  }

  /** A draft kept under `key`; `onBlocked` is called when the browser refuses storage. */
  function draftStore(key, onBlocked) {
    return {
      read() {
        let raw = null;
        try {
          raw = window.localStorage.getItem(key);
        } catch {
          onBlocked();
          return null;
        }
        if (!raw) return null;
        try {
          const draft = JSON.parse(raw);
          return draft && typeof draft === "object" && !Array.isArray(draft) ? draft : null;
        } catch {
          return null;
        }
      },
      write(draft) {
        try {
          window.localStorage.setItem(key, JSON.stringify(draft));
          return true;
        } catch {
          onBlocked();
          return false;
        }
      },
      remove() {
        try {
          window.localStorage.removeItem(key);
        } catch {
          /* nothing to delete where nothing could be stored */
        }
      },
    };
  }

  /**
   * A page's draft, kept until the server confirms it: the page's own content (`content()`:
   * tiers, scores or text, with flags and comment) and what a submission needs again after a
   * reload (the idempotency key and whether it was sent, active time, the base revision).
   * Every edit ends in `changed()`: a key already sent may name a stored version, so an edit
   * takes a new one.
   */
  function draftKeeper({ key, state, timer, content, render, onBlocked }) {
    const store = draftStore(key, onBlocked);
    function write() {
      if (state.done) return;
      if (!state.idempotencyKey) state.idempotencyKey = newKey();
      const draft = {
        version: 1,
        ...content(),
        idempotencyKey: state.idempotencyKey,
        keyUsed: state.keyUsed,
        timeSpentMs: Math.round(timer.total()),
        baseRevision: state.baseRevision,
        savedAt: new Date().toISOString(),
      };
      if (store.write(draft)) state.hasDraft = true;
    }
    function remove() {
      state.hasDraft = false;
      store.remove();
    }
    function changed() {
      if (state.keyUsed) {
        state.idempotencyKey = newKey();
        state.keyUsed = false;
      }
      write();
      render();
    }
    return { read: () => store.read(), write, remove, changed };
  }

  /**
   * The save-status line: `set` says how a submission went; `announce` is a short message for a
   * keyboard action that never overwrites a save error or "Saved".
   */
  function statusLine(element, state) {
    function set(text, tone = "info") {
      element.textContent = text;
      element.dataset.tone = tone;
    }
    function announce(text) {
      if (state.submitting || state.done) return;
      if (element.dataset.tone === "bad" && element.textContent) return;
      set(text, "info");
    }
    return { set, announce };
  }

  /**
   * What every labeling page listens to alike: flag boxes and the comment (each edit ends in
   * `drafts.changed`), submit and retry, the draft and stale-notice buttons, key help, skip,
   * active time (a hidden page stops the clock and keeps the draft's time), and the lease kept
   * alive while a first answer is open. Returns the lease timer's id (null when revising).
   */
  function listenAlike({ ui, state, data, timer, drafts, submit, retry, help, skip,
                         discardDraft, keepMine, loadCurrent }) {
    for (const box of $$("input[data-flag]")) {
      box.addEventListener("change", () => {
        const id = box.dataset.completionId;
        const names = new Set(state.flags[id] || []);
        if (box.checked) names.add(box.dataset.flag);
        else names.delete(box.dataset.flag);
        if (names.size) state.flags[id] = [...names].sort();
        else delete state.flags[id];
        drafts.changed();
      });
    }
    ui.comment.addEventListener("input", () => {
      state.comment = ui.comment.value;
      drafts.changed();
    });
    ui.submit.addEventListener("click", () => submit());
    ui.retryNow.addEventListener("click", () => retry.now());
    window.addEventListener("online", () => retry.now());
    ui.draftDiscard.addEventListener("click", discardDraft);
    ui.staleKeepMine.addEventListener("click", keepMine);
    ui.staleLoadCurrent.addEventListener("click", loadCurrent);
    if (ui.cheatToggle) ui.cheatToggle.addEventListener("click", () => help.toggle(true));
    if (ui.skipButton) ui.skipButton.addEventListener("click", () => skip());
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        timer.pause();
        if (state.hasDraft) drafts.write(); // keep the time spent so far
      } else {
        timer.resume();
      }
    });
    window.addEventListener("pagehide", () => {
      if (state.hasDraft) drafts.write();
    });
    if (data.revision > 0) return null;
    const leaseMs = Math.max(1, Number(data.leaseMinutes) || 30) * 60000;
    return window.setInterval(() => {
      if (!state.done) renewLease(data.urls.lease, ui.leaseNotice);
    }, Math.min(5 * 60000, leaseMs / 2));
  }

  /** Active time on the page: counts while the page is visible. */
  function activeTimer() {
    return {
      earlier: 0, // from a restored draft
      counted: 0,
      since: document.hidden ? null : performance.now(),
      total() {
        const running = this.since === null ? 0 : performance.now() - this.since;
        return this.earlier + this.counted + running;
      },
      pause() {
        if (this.since !== null) {
          this.counted += performance.now() - this.since;
          this.since = null;
        }
      },
      resume() {
        if (this.since === null) this.since = performance.now();
      },
      /** What a submission reports: at least 1 ms, at most what the server takes. */
      spentMs() {
        return Math.min(MAX_TIME_SPENT_MS, Math.max(1, Math.round(this.total())));
      },
      restore(ms) {
        const earlier = Number(ms);
        this.earlier = Number.isFinite(earlier) && earlier > 0 ? Math.min(earlier, MAX_TIME_SPENT_MS) : 0;
      },
    };
  }

  // --- HTTP ----------------------------------------------------------------------------------

  function csrfToken() {
    const input = $("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual", // a redirect (to a login page, say) is not a confirmation
    });
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  function describeRefusal(status, body) {
    if (body && typeof body === "object") {
      if (typeof body.detail === "string" && body.detail) return body.detail;
      const parts = [];
      for (const [field, problems] of Object.entries(body)) {
        const list = Array.isArray(problems) ? problems : [problems];
        const text = list.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");
        parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
      }
      if (parts.length) return parts.join("; ");
    }
    return `the server refused it (HTTP ${status}).`;
  }

  // --- submit, with retries under one key ------------------------------------------------------

  /**
   * POST `payload` until the server answers it. Unanswered (offline, a 5xx, a proxy's page)
   * it is sent again after a growing wait, with the same body and so the same idempotency key:
   * the server stores it once. `hooks.onRetrying(waiting)` is told before and after each wait;
   * `retry.now()` ends the current wait early (a "Retry now" button, the browser going online).
   *
   * Resolves to {kind: "saved", body}, {kind: "stale", body} (409 with the current version)
   * or {kind: "refused", reason, relogin} (nothing was stored under the key).
   */
  function submitWithRetry(url, payload, hooks, retry) {
    return (async () => {
      let delay = 1000;
      for (;;) {
        let response = null;
        try {
          response = await postJson(url, payload);
        } catch {
          response = null; // network error: offline, refused, aborted
        }
        if (response && (response.status === 200 || response.status === 201)) {
          const body = await readJson(response);
          if (body && typeof body === "object" && body.revision !== undefined) {
            return { kind: "saved", body };
          }
          // A 200 that is not the API's answer (a proxy page, say): not a confirmation.
        } else if (response && (response.type === "opaqueredirect" ||
                                (response.status >= 400 && response.status < 500))) {
          const redirected = response.type === "opaqueredirect";
          const body = redirected ? null : await readJson(response);
          if (response.status === 409 && body && body.current) return { kind: "stale", body };
          const reason = redirected
            ? "the server redirected the request; are you still logged in?"
            : describeRefusal(response.status, body);
          return { kind: "refused", reason, relogin: redirected || response.status === 401 };
        }
        hooks.onRetrying(true);
        await retry.wait(delay);
        delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
        hooks.onRetrying(false);
      }
    })();
  }

  /** The wait between retries, which a button or the browser going online can cut short. */
  function retryWaiter() {
    let wake = null;
    return {
      wait(ms) {
        return new Promise((resolve) => {
          const timeout = window.setTimeout(done, ms);
          function done() {
            window.clearTimeout(timeout);
            wake = null;
            resolve();
          }
          wake = done;
        });
      },
      now() {
        if (wake) wake();
      },
    };
  }

  /** Skip a prompt with a reason: {ok: true} or {ok: false, message}. */
  async function skipPrompt(url, promptId, reason) {
    let response = null;
    try {
      response = await postJson(url, { prompt: promptId, reason });
    } catch {
      response = null;
    }
    if (response && response.status >= 200 && response.status < 300) return { ok: true };
    if (response && response.status >= 400 && response.status < 500) {
      const body = await readJson(response);
      return { ok: false, message: `Not skipped: ${describeRefusal(response.status, body)}` };
    }
    return { ok: false, message: "Not skipped: server unreachable. Try again." };
  }

  /** Renew the lease; show `notice` while it is lost. */
  async function renewLease(url, notice) {
    try {
      const response = await postJson(url);
      if (response.status === 409) {
        const body = await readJson(response);
        notice.textContent = `${describeRefusal(409, body)} Submitting may be refused; your draft is kept.`;
        notice.hidden = false;
      } else if (response.ok) {
        notice.hidden = true;
      }
    } catch {
      /* the next renewal, or the submit, will tell */
    }
  }

  // --- keyboard ------------------------------------------------------------------------------

  function isTyping(target) {
    if (!(target instanceof Element)) return false;
    if (target.isContentEditable) return true;
    if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
    if (target instanceof HTMLInputElement) {
      return !["checkbox", "radio", "button", "submit", "reset", "range", "color"].includes(target.type);
    }
    return false;
  }

  /** The key help overlay (`?`): focus goes into it and back where it was. */
  function keyHelp(overlay, closeButton) {
    let focusBefore = null;
    const help = {
      isOpen() {
        return Boolean(overlay) && !overlay.hidden;
      },
      toggle(force) {
        if (!overlay) return;
        const open = force === undefined ? !help.isOpen() : force;
        if (open === help.isOpen()) return;
        overlay.hidden = !open;
        if (open) {
          focusBefore = document.activeElement;
          closeButton.focus();
        } else if (focusBefore instanceof HTMLElement && document.contains(focusBefore)) {
          focusBefore.focus();
          focusBefore = null;
        }
      },
    };
    return help;
  }

  // --- completion cards: layout and long completions -------------------------------------------

  const LAYOUTS = ["columns", "stacked"];

  /**
   * The page's completion cards: `cards` are {card, text, expand} (the card, its text, its
   * "Show all" button). Columns or stacked is chosen with [data-layout-choice] buttons and
   * remembered under `layoutKey`; CSS decides whether columns fit. A completion taller than
   * the CSS cap is long: collapsed, with a button to show it all.
   */
  function completionCards(app, cards, layoutKey) {
    const byCard = new Map(cards.map((entry) => [entry.card, entry]));

    function measure() {
      for (const { card, text, expand } of cards) {
        if (!text || !expand || card.classList.contains("is-expanded")) continue;
        const long = text.scrollHeight > text.clientHeight + 4;
        card.classList.toggle("is-long", long);
        expand.hidden = !long;
      }
    }

    function setExpanded(card, expanded) {
      const { expand } = byCard.get(card);
      card.classList.toggle("is-expanded", expanded);
      expand.setAttribute("aria-expanded", String(expanded));
      expand.firstElementChild.textContent = expanded ? "Show less" : "Show all";
      if (!expanded) {
        measure();
        if (card.getBoundingClientRect().top < 0) card.scrollIntoView({ block: "nearest" });
      }
    }

    const isLong = (card) => Boolean(card) && card.classList.contains("is-long");
    const inView = (card) => {
      const box = card.getBoundingClientRect();
      return box.bottom > 0 && box.top < window.innerHeight;
    };

    return {
      measure,
      setExpanded,
      toggle(card) {
        setExpanded(card, !card.classList.contains("is-expanded"));
      },
      /** The long completion `e` acts on: `preferred` (the selected one), the one holding
       * focus, else the first long one in view; null if none. */
      expandTarget(preferred) {
        if (isLong(preferred)) return preferred;
        const focused = document.activeElement && document.activeElement.closest("article.completion");
        if (isLong(focused)) return focused;
        return cards.map(({ card }) => card).find((card) => isLong(card) && inView(card)) || null;
      },
      toggleAll() {
        const long = cards.map(({ card }) => card).filter(isLong);
        const expand = long.some((card) => !card.classList.contains("is-expanded"));
        long.forEach((card) => setExpanded(card, expand));
      },
      storedLayout() {
        try {
          const layout = window.localStorage.getItem(layoutKey);
          return LAYOUTS.includes(layout) ? layout : null;
        } catch {
          return null;
        }
      },
      setLayout(layout, remember) {
        app.dataset.layout = layout;
        for (const button of $$("[data-layout-choice]")) {
          button.setAttribute("aria-pressed", String(button.dataset.layoutChoice === layout));
        }
        if (remember) {
          try {
            window.localStorage.setItem(layoutKey, layout);
          } catch {
            /* remembered for this page only */
          }
        }
        measure();
      },
      /** Re-measure on resize, once a frame at most. */
      watchResize() {
        let measuring = false;
        window.addEventListener("resize", () => {
          if (measuring) return;
          measuring = true;
          window.requestAnimationFrame(() => {
            measuring = false;
            measure();
          });
        });
      },
    };
  }

  window.rlhfLabeling = {
    $, $$, element, newKey, draftStore, draftKeeper, statusLine, listenAlike, activeTimer, postJson, readJson, describeRefusal,
    submitWithRetry, retryWaiter, skipPrompt, renewLease, isTyping, keyHelp, completionCards,
  };
})();

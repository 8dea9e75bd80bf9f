/*
 * rlhf-studio: the labeler's rating page (templates/annotate/rate.html), rate mode's twin of
 * rank.js; what both pages do alike lives in labeling.js (load it first).
 *
 * Plain ES2020, no dependencies, no build step; loaded with `defer`. Everything the page knows
 * comes from the `rate-data` json_script element and from the server-rendered DOM. Text from
 * the data is only ever written with textContent, never as HTML.
 *
 * State: `scores` is {"<completion id>": {"<aspect>": score}}, as the API takes it. A slot is
 * one completion's one aspect; one slot has the focus, and a digit scores it and moves the
 * focus on to the next slot. Every change is kept as a draft in localStorage (rateData.draftKey)
 * until the server confirms the rating; the server derives the ranking (tiers) from the scores.
 */
(() => {
  "use strict";

  const dataElement = document.getElementById("rate-data");
  const app = document.getElementById("rate-app");
  if (!dataElement || !app || !window.rlhfLabeling) return;
  const data = JSON.parse(dataElement.textContent);

  const {
    $, $$, newKey, draftKeeper, statusLine, listenAlike, activeTimer, submitWithRetry, retryWaiter,
    skipPrompt, isTyping, keyHelp, completionCards, describeRefusal,
  } = window.rlhfLabeling;

  const NAVIGATE_DELAY_MS = 400;
  const scaleMin = Number(data.scaleMin);
  const scaleMax = Number(data.scaleMax);
  const aspects = data.aspects;
  const namedAspects = !(aspects.length === 1 && aspects[0] === "overall");

  const ui = {
    hint: $("#rating-hint"),
    comment: $("#comment"),
    submit: $("#submit-rating"),
    retryNow: $("#retry-now"),
    status: $("#save-status"),
    draftNotice: $("#draft-notice"),
    draftDiscard: $("#draft-discard"),
    leaseNotice: $("#lease-notice"),
    storageNotice: $("#storage-notice"),
    cheatToggle: $("#cheatsheet-toggle"),
    keyHelp: $("#key-help"),
    keyHelpClose: $("#key-help-close"),
    skipReason: $("#skip-reason"),
    skipButton: $("#skip-button"),
    skipStatus: $("#skip-status"),
    staleNotice: $("#stale-notice"),
    staleText: $("#stale-text"),
    staleCurrent: $("#stale-current"),
    staleKeepMine: $("#stale-keep-mine"),
    staleLoadCurrent: $("#stale-load-current"),
  };

  // --- completions and their slots, from the server-rendered cards ---------------------------

  const completions = new Map(); // id -> {id, key, card, text, expand, badge, summary}
  for (const { id, key } of data.completions) {
    const card = document.getElementById(`completion-${id}`);
    if (!card) continue;
    completions.set(id, {
      id, key, card, text: $(".completion-text", card), expand: $("[data-expand]", card),
      badge: $("[data-score-badge]", card),
      summary: $(`#score-summary tr[data-completion-id="${id}"]`),
    });
  }
  // Completion by completion, each one's aspects in order: the order j and digits move in.
  const slots = $$("[data-slot]").map((row) => ({
    id: Number(row.dataset.completionId), aspect: row.dataset.aspect, row,
  })).filter((slot) => completions.has(slot.id));
  const flagNames = new Set($$("input[data-flag]").map((box) => box.dataset.flag));

  // --- state ---------------------------------------------------------------------------------

  const state = {
    scores: {},
    flags: {},
    comment: "",
    focus: 0, // index into slots
    idempotencyKey: null,
    // True once a request carrying the key was sent without a definite answer (see rank.js).
    keyUsed: false,
    hasDraft: false,
    submitting: false,
    done: false,
    baseRevision: Number(data.revision) || 0,
  };
  const timer = activeTimer();

  const scoreOf = (slot) => (state.scores[String(slot.id)] || {})[slot.aspect];
  const isSet = (slot) => Number.isInteger(scoreOf(slot));
  const unsetCount = () => slots.filter((slot) => !isSet(slot)).length;
  const isComplete = () => slots.length > 0 && unsetCount() === 0;

  /** The score a digit key means on this scale, or null: 0 is 10 on a scale that ends at 10. */
  function scoreForDigit(key) {
    const digit = Number(key);
    const score = digit === 0 && scaleMax === 10 ? 10 : digit;
    return score >= scaleMin && score <= scaleMax ? score : null;
  }

  /** Scores from untrusted input (a draft, the server): known completions, aspects, range. */
  function cleanScores(value) {
    const scores = {};
    if (!value || typeof value !== "object" || Array.isArray(value)) return scores;
    for (const [id, given] of Object.entries(value)) {
      if (!completions.has(Number(id)) || !given || typeof given !== "object") continue;
      for (const aspect of aspects) {
        const score = given[aspect];
        if (Number.isInteger(score) && score >= scaleMin && score <= scaleMax) {
          (scores[String(id)] = scores[String(id)] || {})[aspect] = score;
        }
      }
    }
    return scores;
  }

  function cleanFlags(value) {
    const flags = {};
    if (!value || typeof value !== "object" || Array.isArray(value)) return flags;
    for (const [id, names] of Object.entries(value)) {
      if (!completions.has(Number(id)) || !Array.isArray(names)) continue;
      const kept = [...new Set(names.filter((name) => flagNames.has(name)))];
      if (kept.length) flags[String(id)] = kept;
    }
    return flags;
  }

  function slotName(slot) {
    const { key } = completions.get(slot.id);
    return namedAspects ? `Completion ${key}, ${slot.aspect}` : `Completion ${key}`;
  }

  // --- scoring and focus ---------------------------------------------------------------------

  function setScore(slot, score) {
    const id = String(slot.id);
    state.scores[id] = { ...(state.scores[id] || {}), [slot.aspect]: score };
    announce(`${slotName(slot)}: ${score}.`);
    changed();
  }

  function clearScore(slot) {
    const given = state.scores[String(slot.id)];
    if (!given || given[slot.aspect] === undefined) return;
    delete given[slot.aspect];
    if (!Object.keys(given).length) delete state.scores[String(slot.id)];
    announce(`${slotName(slot)}: cleared.`);
    changed();
  }

  /** Move the focus to slot `index` (clamped), onto the page's focus too. */
  function focusSlot(index, { scroll = true } = {}) {
    if (!slots.length) return;
    state.focus = Math.max(0, Math.min(slots.length - 1, index));
    const { row } = slots[state.focus];
    if (document.activeElement !== row) row.focus({ preventScroll: true });
    if (scroll) row.scrollIntoView({ block: "nearest" });
    render();
  }

  /** After a score: the next slot still unset (from the top again after the last), or, with
   * every score given, simply the next one (revising goes through them in order). */
  function advance() {
    const after = [...slots.keys()].map((step) => (state.focus + 1 + step) % slots.length);
    const unset = after.find((index) => !isSet(slots[index]));
    if (unset !== undefined) focusSlot(unset);
    else if (state.focus + 1 < slots.length) focusSlot(state.focus + 1);
    else render();
  }

  function scoreFocused(score) {
    const slot = slots[state.focus];
    if (!slot) return;
    setScore(slot, score);
    advance();
  }

  function stepFocused(step) {
    const slot = slots[state.focus];
    if (!slot) return;
    const current = scoreOf(slot);
    const base = Number.isInteger(current) ? current : (step > 0 ? scaleMin - 1 : scaleMax + 1);
    setScore(slot, Math.max(scaleMin, Math.min(scaleMax, base + step)));
  }

  // --- drafts --------------------------------------------------------------------------------

  const drafts = draftKeeper({
    key: data.draftKey, state, timer, render,
    content: () => ({ scores: state.scores, flags: state.flags, comment: state.comment }),
    onBlocked: () => { ui.storageNotice.hidden = false; },
  });
  const { write: writeDraft, remove: deleteDraft } = drafts;
  /** Every edit of the scores, flags or comment ends here. */
  const changed = drafts.changed;

  // --- rendering -----------------------------------------------------------------------------

  function meanOf(id) {
    const given = state.scores[String(id)] || {};
    const values = aspects.map((aspect) => given[aspect]).filter(Number.isInteger);
    if (values.length !== aspects.length) return null;
    return values.reduce((sum, value) => sum + value, 0) / values.length;
  }

  const shown = (value) => (Number.isInteger(value) ? String(value) : value.toFixed(1));

  function render() {
    slots.forEach((slot, index) => {
      const score = scoreOf(slot);
      slot.row.classList.toggle("is-focused", index === state.focus);
      slot.row.classList.toggle("is-set", Number.isInteger(score));
      for (const button of $$("button[data-score]", slot.row)) {
        const on = Number(button.dataset.score) === score;
        button.setAttribute("aria-checked", String(on));
        button.classList.toggle("is-on", on);
      }
    });
    const focusedId = slots[state.focus] ? slots[state.focus].id : null;
    for (const { id, card, badge, summary } of completions.values()) {
      const mean = meanOf(id);
      card.classList.toggle("is-rated", mean !== null);
      card.classList.toggle("is-selected", id === focusedId);
      if (badge) badge.textContent = mean === null ? "unrated" : `Score ${shown(mean)}`;
      if (!summary) continue;
      summary.classList.toggle("is-focused", id === focusedId);
      const given = state.scores[String(id)] || {};
      for (const cell of $$("[data-summary-aspect]", summary)) {
        const score = given[cell.dataset.summaryAspect];
        cell.textContent = Number.isInteger(score) ? String(score) : "–";
      }
      const meanCell = $("[data-summary-mean]", summary);
      if (meanCell) meanCell.textContent = mean === null ? "–" : shown(mean);
    }
    for (const box of $$("input[data-flag]")) {
      const names = state.flags[box.dataset.completionId] || [];
      box.checked = names.includes(box.dataset.flag);
    }
    if (ui.comment.value !== state.comment) ui.comment.value = state.comment;

    const left = unsetCount();
    if (data.frozen) ui.hint.textContent = "This project is frozen: nothing can be submitted.";
    else if (left === 0) ui.hint.textContent = "All scored. Press Enter to submit.";
    else ui.hint.textContent = `${left} score${left === 1 ? "" : "s"} to give: ${scaleMin} worst … ${scaleMax} best.`;

    ui.submit.disabled = data.frozen || !isComplete() || state.submitting || state.done;
    app.classList.toggle("is-busy", state.submitting || state.done);
    const locked = state.submitting || state.done;
    for (const box of $$("input[data-flag]")) box.disabled = locked;
    ui.comment.readOnly = locked;
  }

  // --- status line ---------------------------------------------------------------------------

  const { set: setStatus, announce } = statusLine(ui.status, state);

  // --- submit --------------------------------------------------------------------------------

  const retry = retryWaiter();

  async function submit() {
    if (state.submitting || state.done) return;
    if (data.frozen) {
      setStatus("Not saved: this project is frozen and takes no more ratings.", "bad");
      return;
    }
    if (!isComplete()) {
      const left = unsetCount();
      setStatus(`Give every score first (${left} missing).`, "warn");
      focusSlot(slots.findIndex((slot) => !isSet(slot)));
      return;
    }
    if (!state.idempotencyKey) state.idempotencyKey = newKey();
    state.keyUsed = true;
    writeDraft();
    state.submitting = true;
    render();
    const payload = {
      prompt: data.promptId,
      scores: state.scores,
      idempotency_key: state.idempotencyKey,
      flags: state.flags,
      comment: state.comment,
      time_spent_ms: timer.spentMs(),
      displayed_order: data.displayedOrder,
      base_revision: state.baseRevision,
    };
    setStatus("Saving…", "info");
    const outcome = await submitWithRetry(data.urls.rankings, payload, {
      onRetrying(waiting) {
        ui.retryNow.hidden = false;
        setStatus(`Not saved: server unreachable — retrying${waiting ? "" : " now"}…`, "bad");
      },
    }, retry);
    if (outcome.kind === "saved") saved(outcome.body);
    else if (outcome.kind === "stale") showStale(outcome.body);
    else refused(outcome);
  }

  function refused(outcome) {
    // Refused (or redirected, to a login page say): nothing was stored under the key.
    const hint = outcome.relogin ? " Log in again in another tab, then submit here." : "";
    state.keyUsed = false;
    state.submitting = false;
    writeDraft();
    ui.retryNow.hidden = true;
    setStatus(`Not saved: ${outcome.reason}${hint} Your draft is kept.`, "bad");
    render();
  }

  /** Another tab or session saved a newer version: show it and let the labeler choose. */
  function showStale(body) {
    const current = body.current;
    state.keyUsed = false;
    state.submitting = false;
    writeDraft();
    ui.retryNow.hidden = true;
    ui.staleText.textContent = describeRefusal(409, body);
    const stored = cleanScores(current.scores);
    ui.staleCurrent.textContent = [...completions.values()].map(({ id, key }) => {
      const given = stored[String(id)] || {};
      const values = aspects.map((aspect) => (given[aspect] === undefined ? "?" : given[aspect]));
      return `${key}: ${values.join("/")}`;
    }).join(", ");
    ui.staleNotice.dataset.revision = String(current.revision);
    ui.staleNotice.hidden = false;
    setStatus("Not saved: a newer version was saved elsewhere. Your draft is kept.", "bad");
    render();
  }

  function keepMine() {
    state.baseRevision = Number(ui.staleNotice.dataset.revision) || state.baseRevision;
    state.idempotencyKey = newKey();
    ui.staleNotice.hidden = true;
    submit();
  }

  function loadCurrent() {
    deleteDraft();
    window.location.reload();
  }

  function leave() {
    window.clearInterval(leaseTimer);
    window.setTimeout(() => window.location.assign(data.urls.next), NAVIGATE_DELAY_MS);
  }

  function saved(body) {
    state.submitting = false;
    state.done = true;
    deleteDraft();
    ui.retryNow.hidden = true;
    const revised = Number(body.revision) > 1 ? ` (revision ${body.revision})` : "";
    setStatus(`Saved${revised}. Loading the next prompt…`, "good");
    render();
    leave();
  }

  // --- skip ----------------------------------------------------------------------------------

  async function skip() {
    if (!ui.skipReason || state.submitting || state.done) return;
    const reason = ui.skipReason.value.trim();
    if (!reason) {
      ui.skipStatus.textContent = "Say why you skip this prompt.";
      ui.skipStatus.dataset.tone = "bad";
      ui.skipReason.focus();
      return;
    }
    ui.skipButton.disabled = true;
    ui.skipStatus.textContent = "Skipping…";
    ui.skipStatus.dataset.tone = "info";
    const outcome = await skipPrompt(data.urls.skips, data.promptId, reason);
    if (outcome.ok) {
      state.done = true;
      deleteDraft();
      ui.skipStatus.textContent = "Skipped. Loading the next prompt…";
      ui.skipStatus.dataset.tone = "good";
      render();
      leave();
      return;
    }
    ui.skipButton.disabled = false;
    ui.skipStatus.dataset.tone = "bad";
    ui.skipStatus.textContent = outcome.message;
  }

  let leaseTimer = null;

  // --- keyboard ------------------------------------------------------------------------------

  const help = keyHelp(ui.keyHelp, ui.keyHelpClose);
  const cards = completionCards(app, [...completions.values()], data.layoutKey);

  function toggleExpandFocused() {
    const slot = slots[state.focus];
    const card = cards.expandTarget(slot ? completions.get(slot.id).card : null);
    if (card) cards.toggle(card);
    else announce("No long completion in view to show in full.");
  }

  /** Keys typed in the comment or the skip reason: only their own shortcuts. */
  function onTypingKey(event) {
    const { key, target } = event;
    if (key === "Enter" && (event.ctrlKey || event.metaKey) && target === ui.comment) {
      event.preventDefault();
      submit();
    } else if (key === "Enter" && target === ui.skipReason) {
      event.preventDefault();
      skip();
    } else if (key === "Escape" && (target === ui.comment || target === ui.skipReason)) {
      target.blur();
    }
  }

  /** Keys that work while the page is busy too: help, layout, long completions, submit. */
  function onPageKey(event) {
    switch (event.key) {
      case "?":
        help.toggle();
        return true;
      case "e":
        toggleExpandFocused();
        return true;
      case "E":
        cards.toggleAll();
        return true;
      case "c":
      case "C":
        cards.setLayout(app.dataset.layout === "columns" ? "stacked" : "columns", true);
        return true;
      case "Enter":
        submit();
        return true;
      default:
        return false;
    }
  }

  /** Keys that score and move the focus. */
  function onScoreKey(event) {
    const { key } = event;
    if (/^[0-9]$/.test(key)) {
      const score = scoreForDigit(key);
      if (score === null) announce(`Scores go from ${scaleMin} to ${scaleMax}.`);
      else scoreFocused(score);
      return true;
    }
    switch (key) {
      case "j":
      case "ArrowDown":
        focusSlot(state.focus + 1);
        return true;
      case "k":
      case "ArrowUp":
        focusSlot(state.focus - 1);
        return true;
      case "ArrowRight":
      case "ArrowLeft":
        stepFocused(key === "ArrowRight" ? 1 : -1);
        return true;
      case "Backspace":
      case "Delete":
        if (slots[state.focus]) clearScore(slots[state.focus]);
        return true;
      default:
        return false;
    }
  }

  function onKeyDown(event) {
    if (event.defaultPrevented || event.isComposing) return;
    const { key, target } = event;
    if (isTyping(target)) {
      onTypingKey(event);
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    // Enter on a link, a <summary> or an ordinary button does what it does natively; score
    // buttons only duplicate keys, so Enter there submits.
    if (key === "Enter" && target instanceof Element &&
        target.closest("a[href], summary, button:not(.score-point)")) {
      return;
    }
    if (key === "Escape") {
      help.toggle(false);
      return;
    }
    if (help.isOpen()) {
      if (key === "Tab" || key === "?") { // the dialog is modal: focus stays on its one control
        event.preventDefault();
        if (key === "?") help.toggle(false);
        else ui.keyHelpClose.focus();
      }
      return;
    }
    if (onPageKey(event)) {
      event.preventDefault();
      return;
    }
    if (state.submitting || state.done) return;
    if (onScoreKey(event)) event.preventDefault();
  }

  // --- mouse ---------------------------------------------------------------------------------

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const expandButton = target.closest("button[data-expand]");
    if (expandButton) {
      cards.toggle(expandButton.closest("article.completion"));
      return;
    }
    const layoutButton = target.closest("button[data-layout-choice]");
    if (layoutButton) {
      cards.setLayout(layoutButton.dataset.layoutChoice, true);
      return;
    }
    if (target === ui.keyHelp || target.closest("#key-help-close")) {
      help.toggle(false); // the backdrop or the close button
      return;
    }
    const point = target.closest("button.score-point");
    if (point && !state.submitting && !state.done) {
      const index = slots.findIndex((slot) => slot.row.contains(point));
      if (index === -1) return;
      state.focus = index;
      slots[index].row.focus({ preventScroll: true });
      setScore(slots[index], Number(point.dataset.score));
    }
  }

  // --- start ---------------------------------------------------------------------------------

  function restore() {
    const draft = drafts.read();
    if (draft) {
      state.scores = cleanScores(draft.scores);
      state.flags = cleanFlags(draft.flags);
      state.comment = typeof draft.comment === "string" ? draft.comment : "";
      state.idempotencyKey =
        typeof draft.idempotencyKey === "string" && draft.idempotencyKey ? draft.idempotencyKey : null;
      state.keyUsed = draft.keyUsed === true;
      // The draft was made against this version: a newer one saved since must be shown first.
      if (Number.isInteger(draft.baseRevision) && draft.baseRevision >= 0) {
        state.baseRevision = draft.baseRevision;
      }
      timer.restore(draft.timeSpentMs);
      state.hasDraft = true;
      ui.draftNotice.hidden = false;
      setStatus("Draft restored.", "info");
    } else {
      state.scores = cleanScores(data.initialScores);
      state.flags = cleanFlags(data.initialFlags);
      state.comment = typeof data.initialComment === "string" ? data.initialComment : "";
    }
    const unset = slots.findIndex((slot) => !isSet(slot));
    state.focus = unset === -1 ? 0 : unset;
  }

  function discardDraft() {
    deleteDraft();
    state.scores = cleanScores(data.initialScores);
    state.flags = cleanFlags(data.initialFlags);
    state.comment = typeof data.initialComment === "string" ? data.initialComment : "";
    state.idempotencyKey = null;
    state.keyUsed = false;
    timer.earlier = 0;
    ui.draftNotice.hidden = true;
    setStatus("Draft discarded.", "info");
    render();
  }

  function listen() {
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("click", onClick);
    // Tab and clicks move the page's focus: the slot with it is the one digits score.
    slots.forEach((slot, index) => {
      slot.row.addEventListener("focus", () => {
        if (state.focus !== index) {
          state.focus = index;
          render();
        }
      });
    });
    leaseTimer = listenAlike({
      ui, state, data, timer, drafts, submit, retry, help, skip, discardDraft, keepMine, loadCurrent,
    });
  }

  function start() {
    restore();
    listen();
    cards.setLayout(cards.storedLayout() || app.dataset.layout || "columns", false);
    cards.watchResize();
    if (slots.length && !data.frozen) focusSlot(state.focus, { scroll: false });
    else render();
    app.dataset.state = "ready";
  }

  start();
})();

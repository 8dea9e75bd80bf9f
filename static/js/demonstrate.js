/*
 * rlhf-studio: the writing page of a demonstrate project (templates/annotate/demonstrate.html).
 *
 * Plain ES2020, no dependencies; loaded with `defer` after labeling.js, whose
 * window.rlhfLabeling it uses for what every labeling page shares (keys, drafts, requests,
 * retries, skips, leases, key help). Everything the page knows comes from the `write-data`
 * json_script element; text from it is only ever written with textContent or as a value.
 *
 * State: the text in the editor, the completion it started from (`sourceId`, null: from
 * scratch) and the comment. Every change is kept as a draft in localStorage until the server
 * confirms the submission; a submission that got no answer is sent again with the same key.
 */
(() => {
  "use strict";

  const dataElement = document.getElementById("write-data");
  const app = document.getElementById("write-app");
  const lib = window.rlhfLabeling;
  if (!dataElement || !app || !lib) return;
  const data = JSON.parse(dataElement.textContent);
  const { $ } = lib;

  const NAVIGATE_DELAY_MS = 400;
  const STALE_PREVIEW = 160;

  const ui = {
    editor: $("#editor"),
    comment: $("#comment"),
    sourceLine: $("#source-line"),
    scratch: $("#start-scratch"),
    charCount: $("#char-count"),
    submit: $("#submit-demonstration"),
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

  // --- completions ---------------------------------------------------------------------------

  const completions = new Map(); // id -> {id, key, text, card, badge}
  const idByKey = new Map();
  for (const { id, key, text } of data.completions) {
    const card = document.getElementById(`completion-${id}`);
    if (!card) continue;
    completions.set(id, { id, key, text, card, badge: $("[data-source-badge]", card) });
    idByKey.set(key, id);
  }
  const cards = lib.completionCards(app, [...completions.values()].map(({ card }) => ({
    card, text: $(".completion-text", card), expand: $("[data-expand]", card),
  })), "");

  // --- state ---------------------------------------------------------------------------------

  const state = {
    text: "",
    sourceId: null,
    comment: "",
    idempotencyKey: null,
    // True once a request carrying the key was sent without a definite answer: the server may
    // have stored it, so changed text must get a new key.
    keyUsed: false,
    hasDraft: false,
    submitting: false,
    done: false, // saved or skipped: the page is about to leave
    baseRevision: Number(data.revision) || 0,
  };
  const timer = lib.activeTimer();
  const retry = lib.retryWaiter();
  const help = lib.keyHelp(ui.keyHelp, ui.keyHelpClose);
  let leaseTimer = null;

  const drafts = lib.draftKeeper({
    key: data.draftKey, state, timer, render,
    content: () => ({ text: state.text, sourceId: state.sourceId, comment: state.comment }),
    onBlocked: () => { ui.storageNotice.hidden = false; },
  });
  const { write: writeDraft, remove: deleteDraft } = drafts;
  /** Every edit of the text, source or comment ends here. */
  const changed = drafts.changed;

  // --- rendering -----------------------------------------------------------------------------

  function render() {
    if (ui.editor.value !== state.text) ui.editor.value = state.text;
    if (ui.comment.value !== state.comment) ui.comment.value = state.comment;
    const source = completions.get(state.sourceId);
    ui.sourceLine.textContent = source ? `editing completion ${source.key}` : "writing from scratch";
    if (source) ui.sourceLine.dataset.source = source.key;
    else delete ui.sourceLine.dataset.source;
    for (const entry of completions.values()) {
      const isSource = entry.id === state.sourceId;
      entry.card.classList.toggle("is-source", isSource);
      entry.badge.hidden = !isSource;
    }
    const length = state.text.trim().length;
    ui.charCount.textContent = String(state.text.length);
    ui.charCount.parentElement.toggleAttribute("data-over", state.text.length > data.maxChars);
    ui.submit.disabled = data.frozen || state.submitting || state.done || length === 0;
    ui.editor.readOnly = state.submitting || state.done;
    app.classList.toggle("is-busy", state.submitting);
  }

  const setStatus = lib.statusLine(ui.status, state).set;

  // --- editing -------------------------------------------------------------------------------

  /** Copy a completion into the editor and remember it as the source. */
  function startFrom(id) {
    const entry = completions.get(id);
    if (!entry || state.submitting || state.done) return;
    const replacing = state.text.trim() && state.text !== entry.text &&
      !(state.sourceId !== null && state.text === (completions.get(state.sourceId) || {}).text);
    if (replacing && !window.confirm(`Replace your text with completion ${entry.key}?`)) return;
    state.text = entry.text;
    state.sourceId = id;
    changed();
    focusEditor();
    setStatus(`Editing completion ${entry.key}.`, "info");
  }

  function startFromScratch() {
    if (state.submitting || state.done) return;
    if (state.text.trim() && !window.confirm("Empty the editor and start from scratch?")) return;
    state.text = "";
    state.sourceId = null;
    changed();
    focusEditor();
    setStatus("Writing from scratch.", "info");
  }

  function focusEditor() {
    ui.editor.focus();
    const end = ui.editor.value.length;
    ui.editor.setSelectionRange(end, end);
  }

  // --- submit --------------------------------------------------------------------------------

  async function submit() {
    if (state.submitting || state.done) return;
    if (data.frozen) {
      setStatus("Not saved: this project is frozen and takes no more responses.", "bad");
      return;
    }
    if (!state.text.trim()) {
      setStatus("Write the response first (the editor is empty).", "warn");
      return;
    }
    if (state.text.trim().length > data.maxChars) {
      setStatus(`Too long: at most ${data.maxChars} characters.`, "warn");
      return;
    }
    if (!state.idempotencyKey) state.idempotencyKey = lib.newKey();
    state.keyUsed = true;
    writeDraft();
    state.submitting = true;
    render();
    setStatus("Saving…", "info");
    const payload = {
      prompt: data.promptId,
      text: state.text,
      source_completion: state.sourceId,
      idempotency_key: state.idempotencyKey,
      comment: state.comment,
      time_spent_ms: timer.spentMs(),
      base_revision: state.baseRevision,
    };
    const outcome = await lib.submitWithRetry(data.urls.demonstrations, payload, {
      onRetrying(waiting) {
        setStatus(waiting ? "Not saved: server unreachable — retrying…"
          : "Not saved: server unreachable — retrying now…", "bad");
        ui.retryNow.hidden = false;
      },
    }, retry);
    ui.retryNow.hidden = true;
    if (outcome.kind === "saved") saved(outcome.body);
    else if (outcome.kind === "stale") showStale(outcome.body);
    else refused(outcome);
  }

  function refused({ reason, relogin }) {
    state.keyUsed = false;
    state.submitting = false;
    writeDraft();
    const hint = relogin ? " Log in again in another tab, then submit here." : "";
    setStatus(`Not saved: ${reason}${hint} Your draft is kept.`, "bad");
    render();
  }

  /** Another tab or session saved a newer version: show it and let the labeler choose. */
  function showStale(body) {
    const current = body.current;
    state.keyUsed = false;
    state.submitting = false;
    writeDraft();
    ui.staleText.textContent = lib.describeRefusal(409, body);
    const text = typeof current.text === "string" ? current.text : "";
    ui.staleCurrent.textContent = text.length > STALE_PREVIEW
      ? `${text.slice(0, STALE_PREVIEW)}…` : text;
    ui.staleNotice.dataset.revision = String(current.revision);
    ui.staleNotice.hidden = false;
    setStatus("Not saved: a newer version was saved elsewhere. Your draft is kept.", "bad");
    render();
  }

  function keepMine() {
    state.baseRevision = Number(ui.staleNotice.dataset.revision) || state.baseRevision;
    state.idempotencyKey = lib.newKey();
    ui.staleNotice.hidden = true;
    submit();
  }

  function loadCurrent() {
    deleteDraft();
    window.location.reload();
  }

  function leave(message, statusElement) {
    state.done = true;
    deleteDraft();
    statusElement.textContent = message;
    statusElement.dataset.tone = "good";
    render();
    window.clearInterval(leaseTimer);
    window.setTimeout(() => window.location.assign(data.urls.next), NAVIGATE_DELAY_MS);
  }

  function saved(body) {
    state.submitting = false;
    const revised = Number(body.revision) > 1 ? ` (revision ${body.revision})` : "";
    leave(`Saved${revised}. Loading the next prompt…`, ui.status);
  }

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
    const result = await lib.skipPrompt(data.urls.skips, data.promptId, reason);
    if (result.ok) {
      leave("Skipped. Loading the next prompt…", ui.skipStatus);
      return;
    }
    ui.skipButton.disabled = false;
    ui.skipStatus.dataset.tone = "bad";
    ui.skipStatus.textContent = result.message;
  }

  // --- keyboard ------------------------------------------------------------------------------

  function onKeyDown(event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!help.isOpen()) submit();
      return;
    }
    if (event.key === "Escape") {
      if (help.isOpen()) {
        event.preventDefault();
        help.toggle(false);
      } else if (lib.isTyping(event.target)) {
        event.preventDefault();
        event.target.blur(); // out of the editor: the keys work again
      }
      return;
    }
    if (lib.isTyping(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") {
      event.preventDefault();
      help.toggle();
      return;
    }
    if (help.isOpen()) return;
    if (idByKey.has(event.key)) {
      event.preventDefault();
      startFrom(idByKey.get(event.key));
    } else if (event.key === "0") {
      event.preventDefault();
      startFromScratch();
    } else if (event.key === "i") {
      event.preventDefault();
      focusEditor();
    }
  }

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const start = target.closest("[data-start-from]");
    if (start) {
      startFrom(Number(start.dataset.startFrom));
      return;
    }
    const expand = target.closest("[data-expand]");
    if (expand) cards.toggle(expand.closest("article.completion"));
    if (target.closest("#key-help-close")) help.toggle(false);
    else if (target === ui.keyHelp) help.toggle(false); // a click beside the box
  }

  // --- start ---------------------------------------------------------------------------------

  function fromSaved(saved) {
    state.text = saved && typeof saved.text === "string" ? saved.text : "";
    state.sourceId = saved && completions.has(saved.sourceId) ? saved.sourceId : null;
    state.comment = saved && typeof saved.comment === "string" ? saved.comment : "";
  }

  function restore() {
    const draft = drafts.read();
    if (!draft) {
      fromSaved(data.initial);
      return;
    }
    fromSaved(draft);
    state.idempotencyKey =
      typeof draft.idempotencyKey === "string" && draft.idempotencyKey ? draft.idempotencyKey : null;
    state.keyUsed = draft.keyUsed === true;
    if (Number.isInteger(draft.baseRevision) && draft.baseRevision >= 0) {
      state.baseRevision = draft.baseRevision;
    }
    timer.restore(draft.timeSpentMs);
    state.hasDraft = true;
    ui.draftNotice.hidden = false;
    setStatus("Draft restored.", "info");
  }

  function discardDraft() {
    deleteDraft();
    fromSaved(data.initial);
    state.idempotencyKey = null;
    state.keyUsed = false;
    timer.restore(0);
    ui.draftNotice.hidden = true;
    setStatus("Draft discarded.", "info");
    render();
  }

  function start() {
    restore();
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("click", onClick);
    ui.editor.addEventListener("input", () => {
      state.text = ui.editor.value;
      changed();
    });
    ui.scratch.addEventListener("click", startFromScratch);
    cards.measure();
    cards.watchResize();
    leaseTimer = lib.listenAlike({
      ui, state, data, timer, drafts, submit, retry, help, skip, discardDraft, keepMine, loadCurrent,
    });
    render();
    app.dataset.state = "ready";
  }

  start();
})();

/*
 * rlhf-studio: the labeler's ranking page (templates/annotate/rank.html).
 *
 * Plain ES2020, no dependencies, no build step; loaded with `defer`. Everything the page
 * knows comes from the `rank-data` json_script element and from the server-rendered DOM.
 * Text from the data is only ever written with textContent, never as HTML.
 *
 * State: `tiers` is a list of tiers, best first; each tier is a list of completion ids and
 * ids in one tier are tied. Completions not in any tier are unranked. Every change is kept
 * as a draft in localStorage (rankData.draftKey) until the server confirms the ranking.
 */
(() => {
  "use strict";

  const dataElement = document.getElementById("rank-data");
  const app = document.getElementById("rank-app");
  if (!dataElement || !app) return;
  const data = JSON.parse(dataElement.textContent);

  const {
    $, $$, element, newKey, draftKeeper, statusLine, listenAlike, activeTimer, submitWithRetry,
    retryWaiter, skipPrompt, isTyping, keyHelp, completionCards, describeRefusal,
  } = window.rlhfLabeling; // static/js/labeling.js

  const NAVIGATE_DELAY_MS = 400;
  const SNIPPET_LENGTH = 80;
  const DRAG_TYPE = "application/x-rlhf-completion";

  const ui = {
    rankingList: $("#ranking-list"),
    rankingDrop: $("#ranking-drop"),
    dropEnd: $("#drop-end"),
    hint: $("#ranking-hint"),
    unranked: $("#unranked"),
    unrankedList: $("#unranked-list"),
    unrankedCount: $("#unranked-count"),
    comment: $("#comment"),
    submit: $("#submit-ranking"),
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

  // --- completions, from the server-rendered cards -------------------------------------------

  const completions = new Map(); // id -> {id, key, card, badge, snippet}
  const idByKey = new Map();
  for (const { id, key } of data.completions) {
    const card = document.getElementById(`completion-${id}`);
    if (!card) continue;
    const text = ($(".completion-text", card) || card).textContent.replace(/\s+/g, " ").trim();
    const snippet = text.length > SNIPPET_LENGTH
      ? `${text.slice(0, SNIPPET_LENGTH).trimEnd()}…`
      : text || "(empty completion)";
    completions.set(id, {
      id, key, card, badge: $("[data-rank-badge]", card), snippet,
      text: $(".completion-text", card), expand: $("[data-expand]", card),
    });
    idByKey.set(key, id);
  }
  const completionCount = completions.size;
  const flagNames = new Set($$("input[data-flag]").map((box) => box.dataset.flag));

  // --- state ---------------------------------------------------------------------------------

  const state = {
    tiers: [],
    flags: {},
    comment: "",
    idempotencyKey: null,
    // True once a request carrying the key was sent without a definite answer: the server may
    // have stored it, so a changed ranking must get a new key or it would be answered with
    // the stored version and the change silently dropped.
    keyUsed: false,
    hasDraft: false,
    selected: null,
    submitting: false,
    done: false, // saved or skipped: the page is about to leave
    // The revision of the stored ranking this page replaces: the server refuses a submission
    // from a version another tab or session has since replaced.
    baseRevision: Number(data.revision) || 0,
  };

  // --- active time on the page: counts while the page is visible -----------------------------

  const timer = activeTimer();
  const timeSpentMs = () => timer.spentMs();

  // --- tiers ---------------------------------------------------------------------------------

  const rankedIds = () => state.tiers.flat();
  const tierIndexOf = (id) => state.tiers.findIndex((tier) => tier.includes(id));
  const isComplete = () => rankedIds().length === completionCount && completionCount > 0;

  function removeFromTiers(id) {
    state.tiers = state.tiers
      .map((tier) => tier.filter((other) => other !== id))
      .filter((tier) => tier.length > 0);
  }

  /** Tiers from untrusted input (a draft, the server): known ids, each once, no empty tiers. */
  function cleanTiers(value) {
    if (!Array.isArray(value)) return [];
    const seen = new Set();
    const tiers = [];
    for (const tier of value) {
      if (!Array.isArray(tier)) continue;
      const ids = tier.filter((id) => completions.has(id) && !seen.has(id));
      ids.forEach((id) => seen.add(id));
      if (!ids.length) continue;
      if (data.allowTies) tiers.push(ids);
      else ids.forEach((id) => tiers.push([id]));
    }
    return tiers;
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

  // The completion last placed for the labeler, and the tiers just after: Backspace right
  // after takes back both it and the completion whose placing placed it.
  let autoPlaced = null;

  /** With the project's setting on, a placing that leaves one completion unranked puts it last. */
  function placeLastIfOneLeft() {
    if (!data.autoPlaceLast) return;
    const ranked = new Set(rankedIds());
    const left = [...completions.keys()].filter((id) => !ranked.has(id));
    if (left.length !== 1) return;
    state.tiers.push([left[0]]);
    autoPlaced = { id: left[0], tiers: JSON.stringify(state.tiers) };
    announce(`Completion ${completions.get(left[0]).key} placed last: all ${completionCount} ranked.`);
  }

  /** Put a completion next in the ranking; a ranked one moves to the end of the ranked. */
  function rankNext(id) {
    removeFromTiers(id);
    state.tiers.push([id]);
    state.selected = id;
    const { key } = completions.get(id);
    announce(`Completion ${key} ranked ${state.tiers.length}.`);
    placeLastIfOneLeft();
    changed();
  }

  function moveSelected(step) {
    const id = state.selected;
    if (id === null || tierIndexOf(id) === -1) return;
    const index = tierIndexOf(id);
    const tier = state.tiers[index];
    if (tier.length > 1) {
      // Out of its tie: just above or just below the others it was tied with.
      tier.splice(tier.indexOf(id), 1);
      state.tiers.splice(step < 0 ? index : index + 1, 0, [id]);
    } else {
      const other = index + step;
      if (other < 0 || other >= state.tiers.length) return;
      [state.tiers[index], state.tiers[other]] = [state.tiers[other], state.tiers[index]];
    }
    changed();
  }

  function moveSelection(step) {
    const order = rankedIds();
    if (!order.length) return;
    const at = order.indexOf(state.selected);
    const next = at === -1 ? (step < 0 ? order.length - 1 : 0) : at + step;
    state.selected = order[Math.max(0, Math.min(order.length - 1, next))];
    render();
  }

  /** Tie the selected completion with the tier above it, or untie it if tied. */
  function toggleTie() {
    if (!data.allowTies) {
      announce("This project does not allow ties.");
      return;
    }
    const id = state.selected;
    const index = tierIndexOf(id);
    if (id === null || index === -1) {
      announce("Select a ranked completion first.");
      return;
    }
    const tier = state.tiers[index];
    if (tier.length > 1) {
      const position = tier.indexOf(id);
      tier.splice(position, 1);
      state.tiers.splice(position === 0 ? index : index + 1, 0, [id]);
      announce(`Completion ${completions.get(id).key} untied.`);
    } else if (index > 0) {
      state.tiers[index - 1].push(id);
      state.tiers.splice(index, 1);
      announce(`Completion ${completions.get(id).key} tied with the one above.`);
    } else {
      announce("The first completion has nothing above it to tie with.");
      return;
    }
    changed();
  }

  function popLast() {
    const last = state.tiers[state.tiers.length - 1];
    if (!last) return;
    last.pop();
    if (!last.length) state.tiers.pop();
  }

  function undoLast() {
    if (!state.tiers.length) return;
    const placedForThem = autoPlaced !== null && autoPlaced.tiers === JSON.stringify(state.tiers);
    autoPlaced = null;
    popLast();
    if (placedForThem) popLast();
    const order = rankedIds();
    state.selected = order.length ? order[order.length - 1] : null;
    changed();
  }

  function unrank(id) {
    if (tierIndexOf(id) === -1) return;
    const order = rankedIds();
    removeFromTiers(id);
    if (state.selected === id) {
      const rest = rankedIds();
      const at = Math.min(order.indexOf(id), rest.length - 1);
      state.selected = at >= 0 ? rest[at] : null;
    }
    changed();
  }

  function resetRanking() {
    if (!state.tiers.length) return;
    state.tiers = [];
    state.selected = null;
    announce("Ranking reset.");
    changed();
  }

  /** Place `id` as its own tier just before or after the tier holding `targetId`. */
  function placeNear(id, targetId, where) {
    if (id === targetId) return;
    removeFromTiers(id);
    const index = tierIndexOf(targetId);
    if (index === -1) state.tiers.push([id]);
    else state.tiers.splice(where === "before" ? index : index + 1, 0, [id]);
    state.selected = id;
    placeLastIfOneLeft();
    changed();
  }

  // --- drafts --------------------------------------------------------------------------------

  const drafts = draftKeeper({
    key: data.draftKey, state, timer, render,
    content: () => ({ tiers: state.tiers, flags: state.flags, comment: state.comment }),
    onBlocked: () => { ui.storageNotice.hidden = false; },
  });
  const { write: writeDraft, remove: deleteDraft } = drafts;
  /** Every edit of the ranking, flags or comment ends here. */
  const changed = drafts.changed;

  // --- rendering -----------------------------------------------------------------------------

  function actionButton(action, label, symbol) {
    return element("button", {
      className: "item-action",
      text: symbol,
      attrs: { type: "button", "data-action": action, "aria-label": label, title: label, tabindex: "-1" },
    });
  }

  function rankItem(id, tierIndex, tier) {
    const { key, snippet } = completions.get(id);
    const selected = id === state.selected;
    const item = element("li", {
      className: "rank-item",
      attrs: {
        id: `rank-item-${id}`,
        role: "option",
        draggable: "true",
        "data-completion-id": String(id),
        "data-key": key,
        "data-rank": String(tierIndex + 1),
        "aria-selected": String(selected),
      },
    });
    if (selected) item.classList.add("is-selected");
    if (tier.length > 1) {
      item.classList.add("is-tied");
      const position = tier.indexOf(id);
      if (position === 0) item.classList.add("tie-first");
      if (position === tier.length - 1) item.classList.add("tie-last");
    }
    item.append(
      element("span", { className: "rank-num", text: String(tierIndex + 1) }),
      element("kbd", { className: "item-key", text: key }),
      element("span", { className: "snippet", text: snippet }),
    );
    if (tier.length > 1) item.append(element("span", { className: "sr-only", text: " (tied)" }));
    const actions = element("span", { className: "item-actions" });
    actions.append(actionButton("up", "Move up", "▲"), actionButton("down", "Move down", "▼"));
    if (data.allowTies) {
      actions.append(actionButton("tie", tier.length > 1 ? "Untie" : "Tie with the one above", "="));
    }
    actions.append(actionButton("remove", "Unrank", "×"));
    item.append(actions);
    return item;
  }

  function render() {
    const ranked = new Map(); // id -> {rank, tied}
    state.tiers.forEach((tier, index) => {
      tier.forEach((id) => ranked.set(id, { rank: index + 1, tied: tier.length > 1 }));
    });
    if (state.selected !== null && !ranked.has(state.selected)) state.selected = null;

    const items = [];
    state.tiers.forEach((tier, index) => tier.forEach((id) => items.push(rankItem(id, index, tier))));
    ui.rankingList.replaceChildren(...items);
    if (state.selected !== null) {
      ui.rankingList.setAttribute("aria-activedescendant", `rank-item-${state.selected}`);
    } else {
      ui.rankingList.removeAttribute("aria-activedescendant");
    }

    const unrankedItems = [];
    for (const { id, key, snippet } of completions.values()) {
      if (ranked.has(id)) continue;
      const item = element("li", {
        className: "unranked-item",
        attrs: {
          draggable: "true",
          "data-completion-id": String(id),
          "data-key": key,
          title: "Click to rank next",
        },
      });
      item.append(
        element("kbd", { className: "item-key", text: key }),
        element("span", { className: "snippet", text: snippet }),
      );
      unrankedItems.push(item);
    }
    ui.unrankedList.replaceChildren(...unrankedItems);
    ui.unrankedCount.textContent = unrankedItems.length ? `(${unrankedItems.length})` : "";
    ui.unranked.classList.toggle("is-empty", unrankedItems.length === 0); // shown while dragging
    ui.dropEnd.hidden = unrankedItems.length === 0 || ranked.size === 0; // empty: the list is the zone

    for (const { id, card, badge } of completions.values()) {
      const place = ranked.get(id);
      card.classList.toggle("is-ranked", Boolean(place));
      card.classList.toggle("is-selected", id === state.selected);
      card.dataset.rank = place ? String(place.rank) : "";
      if (badge) badge.textContent = place ? `Rank ${place.rank}${place.tied ? " (tie)" : ""}` : "unranked";
    }
    for (const box of $$("input[data-flag]")) {
      const names = state.flags[box.dataset.completionId] || [];
      box.checked = names.includes(box.dataset.flag);
    }
    if (ui.comment.value !== state.comment) ui.comment.value = state.comment;

    const left = completionCount - ranked.size;
    if (data.frozen) ui.hint.textContent = "This project is frozen: nothing can be submitted.";
    else if (left === 0) ui.hint.textContent = "All ranked. Press Enter to submit.";
    else if (ranked.size === 0) ui.hint.textContent = "Best first: press the keys in order of preference.";
    else ui.hint.textContent = `${left} more to rank.`;

    ui.submit.disabled = data.frozen || !isComplete() || state.submitting || state.done;
    app.classList.toggle("is-busy", state.submitting || state.done);
    const locked = state.submitting || state.done;
    for (const box of $$("input[data-flag]")) box.disabled = locked;
    ui.comment.readOnly = locked;

    keepSelectedInView();
  }

  /** Scroll the ranking panel (only it, never the page) to show the selected item. */
  function keepSelectedInView() {
    const item = state.selected !== null && document.getElementById(`rank-item-${state.selected}`);
    const panel = ui.rankingList.closest(".rank-panel");
    if (!item || !panel || panel.scrollHeight <= panel.clientHeight) return;
    const itemBox = item.getBoundingClientRect();
    const panelBox = panel.getBoundingClientRect();
    if (itemBox.top < panelBox.top) panel.scrollTop -= panelBox.top - itemBox.top + 8;
    else if (itemBox.bottom > panelBox.bottom) panel.scrollTop += itemBox.bottom - panelBox.bottom + 8;
  }

  // --- status line ---------------------------------------------------------------------------

  const { set: setStatus, announce } = statusLine(ui.status, state);

  // --- submit --------------------------------------------------------------------------------

  const retry = retryWaiter();

  async function submit() {
    if (state.submitting || state.done) return;
    if (data.frozen) {
      setStatus("Not saved: this project is frozen and takes no more rankings.", "bad");
      return;
    }
    if (!isComplete()) {
      const left = completionCount - rankedIds().length;
      setStatus(`Rank all ${completionCount} completions first (${left} unranked).`, "warn");
      return;
    }
    if (!state.idempotencyKey) state.idempotencyKey = newKey();
    state.keyUsed = true;
    writeDraft();
    state.submitting = true;
    render();
    const payload = {
      prompt: data.promptId,
      tiers: state.tiers,
      idempotency_key: state.idempotencyKey,
      flags: state.flags,
      comment: state.comment,
      time_spent_ms: timeSpentMs(),
      displayed_order: data.displayedOrder,
      base_revision: state.baseRevision,
    };
    setStatus("Saving…", "info");
    const outcome = await submitWithRetry(data.urls.rankings, payload, {
      onRetrying(waiting) {
        if (waiting) {
          setStatus("Not saved: server unreachable — retrying…", "bad");
          ui.retryNow.hidden = false;
        } else {
          setStatus("Not saved: server unreachable — retrying now…", "bad");
        }
      },
    }, retry);
    if (outcome.kind === "saved") {
      saved(outcome.body);
    } else if (outcome.kind === "stale") {
      showStale(outcome.body);
    } else {
      // Refused (or redirected, to a login page say): nothing was stored under the key.
      const hint = outcome.relogin ? " Log in again in another tab, then submit here." : "";
      state.keyUsed = false;
      state.submitting = false;
      writeDraft();
      ui.retryNow.hidden = true;
      setStatus(`Not saved: ${outcome.reason}${hint} Your draft is kept.`, "bad");
      render();
    }
  }

  /** Another tab or session saved a newer version: show it and let the labeler choose. */
  function showStale(body) {
    const current = body.current;
    state.keyUsed = false;
    state.submitting = false;
    writeDraft();
    ui.retryNow.hidden = true;
    ui.staleText.textContent = describeRefusal(409, body);
    ui.staleCurrent.textContent = (Array.isArray(current.tiers) ? current.tiers : [])
      .map((tier) => tier.map((id) => (completions.get(id) || { key: "?" }).key).join(" = "))
      .join(" > ");
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

  function saved(body) {
    state.submitting = false;
    state.done = true;
    deleteDraft();
    ui.retryNow.hidden = true;
    const revised = Number(body.revision) > 1 ? ` (revision ${body.revision})` : "";
    setStatus(`Saved${revised}. Loading the next prompt…`, "good");
    render();
    window.clearInterval(leaseTimer);
    window.setTimeout(() => window.location.assign(data.urls.next), NAVIGATE_DELAY_MS);
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
      window.clearInterval(leaseTimer);
      window.setTimeout(() => window.location.assign(data.urls.next), NAVIGATE_DELAY_MS);
      return;
    }
    ui.skipButton.disabled = false;
    ui.skipStatus.dataset.tone = "bad";
    ui.skipStatus.textContent = outcome.message;
  }

  // --- lease ---------------------------------------------------------------------------------

  let leaseTimer = null;

  // --- key help, layout and long completions ---------------------------------------------------

  const help = keyHelp(ui.keyHelp, ui.keyHelpClose);
  const cards = completionCards(app, [...completions.values()], data.layoutKey);

  function toggleExpandTarget() {
    const selected = state.selected !== null ? completions.get(state.selected).card : null;
    const card = cards.expandTarget(selected);
    if (card) cards.toggle(card);
    else announce("No long completion in view to show in full.");
  }


  function onKeyDown(event) {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target;
    const key = event.key;

    if (isTyping(target)) {
      if (key === "Enter" && (event.ctrlKey || event.metaKey) && target === ui.comment) {
        event.preventDefault();
        submit();
      } else if (key === "Enter" && target === ui.skipReason) {
        event.preventDefault();
        skip();
      } else if (key === "Escape" && (target === ui.comment || target === ui.skipReason)) {
        target.blur();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    // Enter on a link, a <summary> or an ordinary button does what it does natively; the
    // buttons that only duplicate keys (card keys, item actions) leave Enter to "submit".
    if (key === "Enter" && target instanceof Element &&
        target.closest("a[href], summary, button:not(.rank-key):not(.item-action)")) {
      return;
    }

    if (key === "?") {
      event.preventDefault();
      help.toggle();
      return;
    }
    if (key === "Escape") {
      help.toggle(false);
      return;
    }
    if (help.isOpen()) {
      if (key === "Tab") { // the dialog is modal: focus stays on its one control
        event.preventDefault();
        ui.keyHelpClose.focus();
      }
      return; // other keys act on the page once the help is closed
    }
    switch (key) {
      case "e":
        event.preventDefault();
        toggleExpandTarget();
        return;
      case "E":
        event.preventDefault();
        cards.toggleAll();
        return;
      case "c":
      case "C":
        event.preventDefault();
        cards.setLayout(app.dataset.layout === "columns" ? "stacked" : "columns", true);
        return;
      default:
    }
    if (key === "Enter") {
      event.preventDefault();
      submit();
      return;
    }
    if (state.submitting || state.done) return;

    if (/^[1-9]$/.test(key) && idByKey.has(key)) {
      event.preventDefault();
      rankNext(idByKey.get(key));
      return;
    }
    const hasSelection = state.selected !== null;
    const anyRanked = state.tiers.length > 0;
    switch (key) {
      case "ArrowUp":
      case "ArrowDown":
        if (!anyRanked) return; // let the page scroll
        event.preventDefault();
        if (event.shiftKey || !hasSelection) moveSelection(key === "ArrowUp" ? -1 : 1);
        else moveSelected(key === "ArrowUp" ? -1 : 1);
        return;
      case "k":
      case "j":
        if (!anyRanked) return;
        event.preventDefault();
        if (!hasSelection) moveSelection(key === "k" ? -1 : 1);
        else moveSelected(key === "k" ? -1 : 1);
        return;
      case "K":
      case "J":
        if (!anyRanked) return;
        event.preventDefault();
        moveSelection(key === "K" ? -1 : 1);
        return;
      case "t":
      case "T":
        event.preventDefault();
        toggleTie();
        return;
      case "Backspace":
        event.preventDefault();
        undoLast();
        return;
      case "Delete":
        if (hasSelection) {
          event.preventDefault();
          unrank(state.selected);
        }
        return;
      case "r":
      case "R":
        event.preventDefault();
        resetRanking();
        return;
      default:
    }
  }

  // --- mouse: clicks -------------------------------------------------------------------------

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
    const keyButton = target.closest("button.rank-key");
    if (keyButton) {
      if (!state.submitting && !state.done) rankNext(idByKey.get(keyButton.dataset.rankKey));
      return;
    }
    const action = target.closest("button.item-action");
    const item = target.closest("li.rank-item");
    if (item && !state.submitting && !state.done) {
      const id = Number(item.dataset.completionId);
      state.selected = id;
      if (!action) {
        render();
        return;
      }
      switch (action.dataset.action) {
        case "up":
          moveSelected(-1);
          break;
        case "down":
          moveSelected(1);
          break;
        case "tie":
          toggleTie();
          break;
        case "remove":
          unrank(id);
          break;
        default:
          render();
      }
      return;
    }
    const unrankedItem = target.closest("li.unranked-item");
    if (unrankedItem && !state.submitting && !state.done) {
      rankNext(Number(unrankedItem.dataset.completionId));
    }
  }

  // --- mouse: native drag and drop -----------------------------------------------------------

  let dragId = null;

  function draggedId(event) {
    if (dragId !== null) return dragId;
    const raw = event.dataTransfer && event.dataTransfer.getData(DRAG_TYPE);
    const id = Number(raw);
    return raw && completions.has(id) ? id : null;
  }

  function isOurDrag(event) {
    return dragId !== null ||
      Boolean(event.dataTransfer && Array.from(event.dataTransfer.types).includes(DRAG_TYPE));
  }

  function clearDropMarks() {
    $$(".drop-before, .drop-after, .drop-target").forEach((node) =>
      node.classList.remove("drop-before", "drop-after", "drop-target"));
  }

  /** Where a drop on ranked item `item` puts `id`: "before" or "after" that item's tier. */
  function dropSide(item, clientY, id) {
    const box = item.getBoundingClientRect();
    const fraction = box.height ? (clientY - box.top) / box.height : 0.5;
    if (fraction < 0.3) return "before";
    if (fraction > 0.7) return "after";
    // The middle: the dragged completion takes the target's place.
    const order = rankedIds();
    const from = order.indexOf(id);
    const to = order.indexOf(Number(item.dataset.completionId));
    return from !== -1 && from < to ? "after" : "before";
  }

  function onDragStart(event) {
    const target = event.target instanceof Element ? event.target : null;
    const source = target && target.closest("article.completion, li.rank-item, li.unranked-item");
    if (!source || state.submitting || state.done) {
      if (source) event.preventDefault();
      return;
    }
    dragId = Number(source.dataset.completionId);
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData(DRAG_TYPE, String(dragId));
    event.dataTransfer.setData("text/plain", `Completion ${completions.get(dragId).key}`);
    source.classList.add("is-dragging");
    app.classList.add("is-dragging-any");
  }

  function onDragEnd() {
    dragId = null;
    clearDropMarks();
    $$(".is-dragging").forEach((node) => node.classList.remove("is-dragging"));
    app.classList.remove("is-dragging-any");
  }

  function onRankingDragOver(event) {
    if (!isOurDrag(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    clearDropMarks();
    const item = event.target instanceof Element && event.target.closest("li.rank-item");
    const id = dragId;
    if (item) {
      if (id !== null && Number(item.dataset.completionId) === id) return;
      item.classList.add(dropSide(item, event.clientY, id) === "before" ? "drop-before" : "drop-after");
    } else {
      ui.rankingDrop.classList.add("drop-target");
    }
  }

  function onRankingDrop(event) {
    if (!isOurDrag(event)) return;
    event.preventDefault();
    const id = draggedId(event);
    clearDropMarks();
    if (id === null || state.submitting || state.done) return;
    const item = event.target instanceof Element && event.target.closest("li.rank-item");
    if (item) {
      const targetId = Number(item.dataset.completionId);
      if (targetId !== id) placeNear(id, targetId, dropSide(item, event.clientY, id));
    } else {
      rankNext(id);
    }
  }

  function onUnrankedDragOver(event) {
    if (!isOurDrag(event) || dragId === null || tierIndexOf(dragId) === -1) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    clearDropMarks();
    ui.unranked.classList.add("drop-target");
  }

  function onUnrankedDrop(event) {
    if (!isOurDrag(event)) return;
    event.preventDefault();
    const id = draggedId(event);
    clearDropMarks();
    if (id !== null && !state.submitting && !state.done) unrank(id);
  }

  function onDragLeave(event) {
    const region = event.currentTarget;
    if (!(event.relatedTarget instanceof Node) || !region.contains(event.relatedTarget)) {
      clearDropMarks();
    }
  }

  // --- start ---------------------------------------------------------------------------------

  function restore() {
    const draft = drafts.read();
    if (draft) {
      state.tiers = cleanTiers(draft.tiers);
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
    } else if (Array.isArray(data.initialTiers)) {
      state.tiers = cleanTiers(data.initialTiers);
      state.flags = cleanFlags(data.initialFlags);
      state.comment = typeof data.initialComment === "string" ? data.initialComment : "";
    }
    const order = rankedIds();
    state.selected = order.length ? order[order.length - 1] : null;
  }

  function discardDraft() {
    deleteDraft();
    state.tiers = cleanTiers(data.initialTiers);
    state.flags = cleanFlags(data.initialFlags);
    state.comment = typeof data.initialComment === "string" ? data.initialComment : "";
    state.idempotencyKey = null;
    state.keyUsed = false;
    timer.earlier = 0;
    const order = rankedIds();
    state.selected = order.length ? order[order.length - 1] : null;
    ui.draftNotice.hidden = true;
    setStatus("Draft discarded.", "info");
    render();
  }

  function start() {
    restore();

    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("click", onClick);
    document.addEventListener("dragstart", onDragStart);
    document.addEventListener("dragend", onDragEnd);
    ui.rankingDrop.addEventListener("dragover", onRankingDragOver);
    ui.rankingDrop.addEventListener("drop", onRankingDrop);
    ui.rankingDrop.addEventListener("dragleave", onDragLeave);
    ui.unranked.addEventListener("dragover", onUnrankedDragOver);
    ui.unranked.addEventListener("drop", onUnrankedDrop);
    ui.unranked.addEventListener("dragleave", onDragLeave);
    cards.setLayout(cards.storedLayout() || app.dataset.layout || "columns", false);
    cards.watchResize();
    leaseTimer = listenAlike({
      ui, state, data, timer, drafts, submit, retry, help, skip, discardDraft, keepMine, loadCurrent,
    });

    render();
    app.dataset.state = "ready";
  }

  start();
})();

/* The staff board: new orders flash (and beep, when this device asked for sound), an
   Undo button disappears when its 30 s are up, and a form a cook is filling in on a card
   ("Cancel return" and its reason) survives the live updates of the other cards.
   Served from /static: the CSP allows no inline script. */
(function () {
  "use strict";
  var SOUND_KEY = "pizzeria.board.sound";
  var seen = null;

  var renderedAt = Date.now();
  var flashed = new Set();

  function cardIds() {
    var ids = new Set();
    document.querySelectorAll("#board .board-card").forEach(function (card) {
      ids.add(card.getAttribute("data-delivery-id"));
    });
    return ids;
  }

  function soundOn() {
    try { return window.localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { return false; }
  }

  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      var audio = new Context();
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.15;
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound on this device */ }
  }

  /* The server marks a queued card paid in the last minute as "new-order", in every
     render (so a re-render or a first render never loses it). Here: the flash plays once
     per card, and a new order that was not on this screen before is announced (and beeps). */
  function announceNewOrders() {
    var fresh = [];
    document.querySelectorAll("#board .board-card.new-order").forEach(function (card) {
      var id = card.getAttribute("data-delivery-id");
      if (seen !== null && !seen.has(id)) { fresh.push(id); }
      if (!flashed.has(id)) {
        flashed.add(id);
        card.classList.add("flash");
      }
    });
    seen = cardIds();
    var board = document.getElementById("board");
    if (fresh.length && board) {
      board.setAttribute("data-new-orders", String(Number(board.getAttribute("data-new-orders") || 0) + fresh.length));
      var status = document.getElementById("board-announcer");
      if (status) {
        // the words come from the page, in its language
        status.textContent = fresh.length === 1
          ? (status.getAttribute("data-one") || "New order")
          : (status.getAttribute("data-many") || "{n} new orders").replace("{n}", String(fresh.length));
      }
      if (soundOn()) { beep(); }
    }
  }

  /* Cards age between renders: the minutes since payment, the end of "new", and the two
     late levels follow the clock, from what the server said at the last render (its own
     clock, so a wrong clock on this screen changes nothing). Same rules as the server:
     amber once the promise has passed or after the amber minutes, red once well past the
     promise or after the red minutes. */
  function words(board, name, n) {
    return (board.getAttribute("data-words-" + name) || "").replace("{n}", String(n));
  }

  function ageCards() {
    var board = document.getElementById("board");
    if (!board) { return; }
    var elapsed = Math.max(0, (Date.now() - renderedAt) / 1000);
    var amber = Number(board.getAttribute("data-amber-minutes")) || 20;
    var red = Number(board.getAttribute("data-red-minutes")) || 40;
    board.querySelectorAll(".board-card[data-age-seconds]").forEach(function (card) {
      var minutes = Math.floor((Number(card.getAttribute("data-age-seconds")) + elapsed) / 60);
      var shown = card.querySelector(".card-minutes");
      if (shown && board.hasAttribute("data-words-minutes")) { shown.textContent = words(board, "minutes", minutes); }
      var newFor = card.getAttribute("data-new-for");
      if (newFor !== null && elapsed >= Number(newFor)) {
        card.classList.remove("new-order", "flash");
        card.removeAttribute("data-new-for");
      }
      if (card.getAttribute("data-tracked") !== "true") { return; }
      var promiseIn = card.getAttribute("data-promise-in");
      var lateSeconds = promiseIn === null ? null : elapsed - Number(promiseIn);
      var past = lateSeconds !== null && lateSeconds > 0;
      var lateMinutes = past ? Math.floor(lateSeconds / 60) : 0;
      var level = "on-time";
      if (minutes >= red || (past && lateMinutes >= red - amber)) { level = "late-red"; }
      else if (minutes >= amber || past) { level = "late-amber"; }
      if (card.getAttribute("data-lateness") !== level) {
        card.setAttribute("data-lateness", level);
        card.classList.remove("late-amber", "late-red");
        if (level !== "on-time") { card.classList.add(level); }
      }
      var promised = card.querySelector(".promised");
      if (!promised) { return; }
      var label = promised.querySelector(".late-label");
      var text = level === "late-red" ? words(board, "very-late", lateMinutes)
        : level === "late-amber" ? (lateMinutes ? words(board, "late", lateMinutes) : words(board, "running-late", 0))
        : "";
      if (!text) {
        if (label) {
          var dot = label.previousSibling;
          if (dot && dot.nodeType === 3 && dot.textContent.trim() === "·") { dot.remove(); }
          label.remove();
        }
        return;
      }
      if (!label) {
        label = document.createElement("strong");
        label.className = "late-label";
        promised.appendChild(document.createTextNode(" · "));
        promised.appendChild(label);
      }
      if (label.textContent !== text) { label.textContent = text; }
    });
  }

  function expireUndo() {
    document.querySelectorAll("#board [data-undo-seconds]").forEach(function (button) {
      if (button.hasAttribute("data-undo-timer")) { return; }
      button.setAttribute("data-undo-timer", "1");
      var seconds = Number(button.getAttribute("data-undo-seconds")) || 0;
      window.setTimeout(function () {
        var form = button.closest("form");
        if (form) { form.remove(); }
      }, seconds * 1000);
    });
  }

  /* -- a form in use on the board is not wiped by the live updates ----------------------
     The board's body is re-rendered whole on every SSE message and every 30 s. While a
     person is using a board form (opened on a card, focus inside it, or its request on its
     way), those automatic refreshes wait and one refresh follows when the form is left
     (or after a minute untouched). Any swap that
     does happen (a click on another card) keeps open forms open with what was typed. */
  var pending = false;

  /** A refresh is waiting for the form (shown on #board for tests and styles). */
  function setPending(value) {
    pending = value;
    var board = document.getElementById("board");
    if (board) { board.setAttribute("data-refresh-pending", value ? "true" : "false"); }
    var notice = document.getElementById("board-paused");
    if (notice) { notice.classList.toggle("is-paused", value); }
  }

  /* A form left alone (focus still in it, nothing typed) for this long stops holding the
     board back: a kitchen screen must not freeze because someone walked away. The swap
     then keeps the form open with its words (snapshot and restore below). */
  var HOLD_MS = 60000;
  var lastTouched = 0;

  /* A press on the board (pointer down, not yet up) holds refreshes too: a swap between
     the press and the release would replace the button or summary under the finger, and
     the browser then drops the click (its press and release hit different elements). */
  var PRESS_MS = 2000;
  var pressedAt = 0;

  function boardElement() { return document.getElementById("board"); }

  function formInUse() {
    var board = boardElement();
    if (!board) { return false; }
    if (board.querySelector("form.htmx-request") !== null) { return true; }
    if (pressedAt && Date.now() - pressedAt < PRESS_MS) { return true; }
    if (Date.now() - lastTouched >= HOLD_MS) { return false; }
    // a form opened on a card ("Cancel return") is in use before its field has the focus:
    // the click that opens it leaves the focus on its summary, outside the form
    if (board.querySelector(".board-card details[open]") !== null) { return true; }
    // typing in a field holds the board; a focused button (a keyboard user's place) does not
    var active = document.activeElement;
    return Boolean(active && board.contains(active) && active.closest("form") &&
      active.matches("input:not([type=hidden]):not([type=submit]), textarea, select"));
  }

  function refreshNow() {
    setPending(false);
    var board = boardElement();
    if (board && window.htmx) {
      window.htmx.ajax("GET", board.getAttribute("hx-get") || "/staff/board/columns",
                       { source: board, target: board, swap: "innerHTML" });
    }
  }

  function refreshWhenFree() {
    // after the focus has settled (focusout fires before the next element takes it)
    window.setTimeout(function () { if (pending && !formInUse()) { refreshNow(); } }, 0);
  }

  function cardKey(element) {
    var card = element.closest(".board-card");
    return card ? card.getAttribute("data-delivery-id") : null;
  }

  function snapshot() {
    var board = boardElement();
    var state = { open: [], values: [], focus: null };
    if (!board) { return state; }
    board.querySelectorAll("details[open]").forEach(function (details) {
      var key = cardKey(details);
      if (key) { state.open.push([key, details.className]); }
    });
    board.querySelectorAll("input[id], textarea[id]").forEach(function (field) {
      if (field.type !== "hidden" && field.value) { state.values.push([field.id, field.value]); }
    });
    var active = document.activeElement;
    if (active && active.id && board.contains(active)) {
      state.focus = [active.id, active.selectionStart, active.selectionEnd, cardKey(active)];
    }
    return state;
  }

  function restore(state) {
    var board = boardElement();
    if (!board) { return; }
    state.open.forEach(function (entry) {
      var card = board.querySelector('.board-card[data-delivery-id="' + entry[0] + '"]');
      var details = card && card.querySelector("details" + (entry[1] ? "." + entry[1].split(/\s+/).join(".") : ""));
      if (details) { details.open = true; }
    });
    state.values.forEach(function (entry) {
      var field = document.getElementById(entry[0]);
      if (field && board.contains(field) && !field.value) { field.value = entry[1]; }
    });
    if (state.focus) {
      var again = document.getElementById(state.focus[0]);
      if (again && board.contains(again)) {
        again.focus();
        try { again.setSelectionRange(state.focus[1], state.focus[2]); } catch (e) { /* not text */ }
      } else if (state.focus[3]) {
        // the button went with the move (no next stage here): the card keeps the place,
        // so the next Tab goes on from it, not from the top of the page
        var card = board.querySelector('.board-card[data-delivery-id="' + state.focus[3] + '"]');
        if (card) { card.focus(); }
      }
    }
  }

  var saved = null;

  function holdBack(event) {
    var board = boardElement();
    if (!board || event.target !== board) { return; }
    if (formInUse()) {
      event.preventDefault();
      setPending(true);
    }
  }

  function protectEdits() {
    var board = boardElement();
    if (!board) { return; }
    // the SSE message and the 30 s poll: wait while a form is in use
    board.addEventListener("htmx:sseBeforeMessage", function (event) {
      holdBack(event);
      if (!event.defaultPrevented) { saved = snapshot(); }
    });
    board.addEventListener("htmx:sseMessage", function () {
      setPending(false);
      if (saved) { restore(saved); saved = null; }
    });
    board.addEventListener("htmx:beforeRequest", function (event) {
      var elt = event.detail && event.detail.elt;
      if (elt === board && event.detail.requestConfig && event.detail.requestConfig.verb === "get") {
        holdBack(event);
      }
    });
    // every swap that does happen keeps open forms and typed words
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      if (event.detail && event.detail.target === board) { saved = snapshot(); }
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.target === board) {
        setPending(false);
        if (saved) { restore(saved); saved = null; }
      }
    });
    ["focusin", "input", "keydown", "click"].forEach(function (name) {
      board.addEventListener(name, function () { lastTouched = Date.now(); });
    });
    board.addEventListener("pointerdown", function () { pressedAt = Date.now(); });
    // the click (which may open a form) comes right after the release: decide after it
    ["pointerup", "pointercancel"].forEach(function (name) {
      board.addEventListener(name, function () { pressedAt = 0; refreshWhenFree(); });
    });
    window.setInterval(function () { if (pending && !formInUse()) { refreshNow(); } }, 5000);
    board.addEventListener("focusout", refreshWhenFree);
    board.addEventListener("htmx:afterRequest", refreshWhenFree);
    board.addEventListener("toggle", refreshWhenFree, true);
  }

  function showSound(toggle) {
    var on = soundOn();
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.textContent = on ? (toggle.getAttribute("data-on") || "Sound: on")
                            : (toggle.getAttribute("data-off") || "Sound: off");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("sound-toggle");
    if (toggle) {
      toggle.hidden = false;
      showSound(toggle);
      toggle.addEventListener("click", function () {
        try { window.localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on"); } catch (e) { /* private mode */ }
        showSound(toggle);
        if (soundOn()) { beep(); }
      });
    }
    announceNewOrders();
    expireUndo();
    protectEdits();
    ageCards();
    window.setInterval(ageCards, 5000);
    function refreshed(event) {
      if (event.target && event.target.id === "board") {
        renderedAt = Date.now();
        announceNewOrders();
        expireUndo();
        ageCards();
      }
    }
    // SSE swaps say htmx:sseMessage; button and timer swaps say htmx:afterSwap.
    document.body.addEventListener("htmx:sseMessage", refreshed);
    document.body.addEventListener("htmx:afterSwap", refreshed);
  });
})();

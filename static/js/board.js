/* The staff board: new orders flash (and beep, when this device asked for sound), and an
   Undo button disappears when its 30 s are up. Served from /static: the CSP allows no
   inline script. */
(function () {
  "use strict";
  var SOUND_KEY = "pizzeria.board.sound";
  var seen = null;

  function queuedIds() {
    var ids = new Set();
    document.querySelectorAll('#board [data-column="queued"] .board-card').forEach(function (card) {
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

  function announceNewOrders() {
    var now = queuedIds();
    var fresh = [];
    if (seen !== null) {
      now.forEach(function (id) { if (!seen.has(id)) { fresh.push(id); } });
    }
    seen = now;
    fresh.forEach(function (id) {
      var card = document.querySelector('#board .board-card[data-delivery-id="' + id + '"]');
      if (card) { card.classList.add("new-order"); }
    });
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
    function refreshed(event) {
      if (event.target && event.target.id === "board") {
        announceNewOrders();
        expireUndo();
      }
    }
    // SSE swaps say htmx:sseMessage; button and timer swaps say htmx:afterSwap.
    document.body.addEventListener("htmx:sseMessage", refreshed);
    document.body.addEventListener("htmx:afterSwap", refreshed);
  });
})();

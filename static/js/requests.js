/* What a person sees when a button that updates part of the page (HTMX) is refused or
   cannot reach the shop: htmx swaps nothing for an error answer, so without this the
   click just does nothing (an Add in a tab whose sign-in changed elsewhere, an Undo too
   late). The answer's own words are shown when it has them (an error page's message, a
   fragment's alert), else the page's generic ones, in its language. */
(function () {
  "use strict";

  function wordsOf(xhr) {
    var type = xhr.getResponseHeader("content-type") || "";
    try {
      if (type.indexOf("application/json") === 0) {
        var body = JSON.parse(xhr.responseText);
        if (body && typeof body.detail === "string") { return body.detail; }
      } else if (type.indexOf("text/html") === 0) {
        var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var said = doc.querySelector("#error-message") ||
          doc.querySelector("[role=alert]:not(#request-notice)");
        if (said && said.textContent.trim()) { return said.textContent.trim(); }
      }
    } catch (ignored) { /* an answer we cannot read: the generic words below */ }
    return null;
  }

  function show(text) {
    var notice = document.getElementById("request-notice");
    if (!notice || !text) { return; }
    notice.textContent = text;
    notice.hidden = false;
  }

  function hide() {
    var notice = document.getElementById("request-notice");
    if (notice) { notice.hidden = true; notice.textContent = ""; }
  }

  /* A keyboard user who pressed a button in the part being re-rendered (the basket's
     "one more") keeps their place: the same button again (its id or label), else the
     re-rendered part itself when it can take focus, never the top of the page. Only when
     the swap lost the focus: settling waits 20 ms, and a Tab or a press the person made
     meanwhile to another button stays where they put it. */
  var focused = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var active = document.activeElement;
    var target = event.detail.target;
    focused = null;
    if (active && active !== document.body && target && target.id && target.contains(active)) {
      focused = { part: target.id, id: active.id, label: active.getAttribute("aria-label") };
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focused) { return; }
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) {
      focused = null;
      return;
    }
    var part = document.getElementById(focused.part);
    var again = (focused.id && document.getElementById(focused.id)) ||
      (part && focused.label &&
        part.querySelector('[aria-label="' + window.CSS.escape(focused.label) + '"]'));
    focused = null;
    if (again) { again.focus(); } else if (part && part.hasAttribute("tabindex")) { part.focus(); }
  });

  /* a person's next click clears the notice; a page's own polling does not */
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = (event.detail.elt && event.detail.elt.getAttribute("hx-trigger")) || "";
    if (trigger.indexOf("every") === -1) { hide(); }
  });
  /* A refusal about one field of the form that was sent (the error page names it) is
     shown next to that field, as a page re-rendered without JavaScript shows it; what the
     person typed stays, since nothing was swapped. */
  function besideField(event) {
    var xhr = event.detail.xhr;
    var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form");
    if (!form || (xhr.getResponseHeader("content-type") || "").indexOf("text/html") !== 0) {
      return false;
    }
    var said = new DOMParser().parseFromString(xhr.responseText, "text/html")
      .querySelector("#error-message[data-field]");
    var input = said && form.querySelector('[name="' + window.CSS.escape(said.getAttribute("data-field")) + '"]');
    if (!input || !input.id) { return false; }
    var id = input.id + "-error";
    var message = document.getElementById(id);
    if (!message) {
      message = document.createElement("p");
      message.id = id;
      message.className = "error";
      message.setAttribute("role", "alert");
      input.insertAdjacentElement("afterend", message);
    }
    message.textContent = said.textContent.trim();
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id);
    input.focus();
    return true;
  }

  /* A form sent without htmx comes back as a whole page with what was wrong next to its
     fields: the person starts at the first of them, not at the top of the page, and a
     screen reader reads its message (aria-describedby). Only when nothing else took the
     focus (the page's own autofocus, a click made meanwhile). */
  document.addEventListener("DOMContentLoaded", function () {
    var invalid = document.querySelector('main [aria-invalid="true"]');
    if (invalid && (!document.activeElement || document.activeElement === document.body)) {
      invalid.focus();
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    if (besideField(event)) { return; }
    show(wordsOf(event.detail.xhr) || document.body.getAttribute("data-request-refused"));
  });
  document.addEventListener("htmx:sendError", function () {
    show(document.body.getAttribute("data-request-unsent"));
  });
})();

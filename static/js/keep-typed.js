/* The language switch reloads the page in the other language: what the person typed in
   the page's forms comes back with it instead of being lost (a checkout's address, phone
   and note; a refund's words). Kept for this tab only (sessionStorage) and only until the
   page is shown again, and never a password or a card number. Served from /static: the
   CSP allows no inline script. */
(function () {
  "use strict";
  var KEY = "pizzeria.typed";
  var NOT_KEPT = /^(password|hidden|submit|button|reset|file|image)$/;

  function keepable(field) {
    return Boolean(field.name) && !NOT_KEPT.test(field.type) &&
      !/(^|\s)cc-/.test(field.getAttribute("autocomplete") || "");
  }

  /* Each kept field by its form's place on the page and its name (and a choice's value). */
  function eachField(visit) {
    document.querySelectorAll("main form").forEach(function (form, index) {
      Array.prototype.forEach.call(form.elements, function (field) {
        if (!keepable(field)) return;
        var choice = field.type === "checkbox" || field.type === "radio";
        visit(field, index + ":" + field.name + (choice ? "=" + field.value : ""), choice);
      });
    });
  }

  document.addEventListener("submit", function (event) {
    if (!event.target.matches(".language-switch")) return;
    var typed = {};
    eachField(function (field, key, choice) {
      typed[key] = choice ? field.checked : field.value;
    });
    try {
      sessionStorage.setItem(KEY, JSON.stringify({ path: location.pathname, typed: typed }));
    } catch (ignored) { /* storage off or full: the switch works, the words are lost */ }
  });

  function restore() {
    var kept = null;
    try {
      kept = JSON.parse(sessionStorage.getItem(KEY) || "null");
      sessionStorage.removeItem(KEY);
    } catch (ignored) { return; }
    if (!kept || kept.path !== location.pathname) return;
    var changed = [];
    eachField(function (field, key, choice) {
      if (!Object.prototype.hasOwnProperty.call(kept.typed, key)) return;
      if (choice) field.checked = kept.typed[key];
      else if (field.value !== kept.typed[key]) {
        field.value = kept.typed[key];
        if (field.hasAttribute("hx-trigger")) changed.push(field);
      }
    });
    /* a field the page checks as it changes (the coupon: the total takes it off) is
       checked again, once htmx has set the page up */
    setTimeout(function () {
      changed.forEach(function (field) {
        field.dispatchEvent(new Event("change", { bubbles: true }));
      });
    }, 0);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", restore);
  else restore();
})();

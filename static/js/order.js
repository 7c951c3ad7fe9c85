/* A notice on the order page (a refused cancel) speaks of the order as the page showed
   it. Once a live update shows a newer version of the order (staff pressed Undo, the
   kitchen moved it on), the notice may no longer hold: it said "can no longer be
   cancelled" beside a Cancel button that works again. So it goes; a notice without a
   version ("this is the order you placed") is not about the order's state, and stays. */
(function () {
  "use strict";
  document.addEventListener("htmx:sseMessage", function () {
    var notice = document.getElementById("order-notice");
    var status = document.getElementById("order-status");
    if (notice && status && notice.hasAttribute("data-version") &&
        status.getAttribute("data-version") !== notice.getAttribute("data-version")) {
      notice.remove();
    }
  });
})();

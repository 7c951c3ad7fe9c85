/* "Back to your form" on a "please try again" error page: going back in history returns
   to the form as the person left it, with what they typed (the browser restores it). The
   link's href, the form's page, is the way without JavaScript or without a history.
   Served from /static: the CSP allows no inline script. */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });
})();

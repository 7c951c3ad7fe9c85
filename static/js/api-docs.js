/* The API reference (/schema): Swagger UI from this site's own /static, started here
   rather than by an inline script, so the shop's Content-Security-Policy (own scripts
   only, no inline script, no third-party origin) holds on this page too, and the page
   works without the internet. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var container = document.getElementById("swagger-container");
    window.SwaggerUIBundle({
      url: container.getAttribute("data-spec"),
      dom_id: "#swagger-container",
      deepLinking: true
    });
  });
})();

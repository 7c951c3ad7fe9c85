/* A live part of a page (an order, a refund: sse-connect) holds a connection to the shop
   for as long as its tab is open. A browser opens at most six connections to one site
   over HTTP/1.1, so six such tabs left open froze every other page of the shop in that
   browser: a seventh tab never loaded, with no word why. A hidden tab needs no live
   updates, so a part marked data-pause-when-hidden closes its stream while its tab is
   hidden and opens it again when the tab is shown; the stream's first message is the
   order as it is then, so nothing that happened meanwhile is missed. The staff board is
   not marked: its sound tells staff of new orders from a background tab. */
(function () {
  "use strict";
  if (typeof htmx === "undefined" || !htmx.createEventSource) { return; }

  var sources = [];  // the streams the sse extension opened and nobody closed yet
  var create = htmx.createEventSource;
  htmx.createEventSource = function (url) {
    var source = create(url);
    // one stream per part: a stream opened on resume while the extension's retry of a
    // failed one was still pending would otherwise live on beside the retry's (two of
    // the six connections)
    closeStreams(source.url);
    sources.push(source);
    // a tab opened in the background (a middle click) starts hidden: it never hears
    // "hidden", so its stream closes once the extension has set it up
    if (document.visibilityState === "hidden") { window.setTimeout(pauseIfHidden, 0); }
    return source;
  };

  function pausable() {
    return document.querySelectorAll("[sse-connect][data-pause-when-hidden]");
  }

  // close the streams open on url (absolute), and forget every closed one (the board
  // reconnects for days)
  function closeStreams(url) {
    sources = sources.filter(function (source) {
      if (source.readyState === EventSource.CLOSED) { return false; }
      if (source.url !== url) { return true; }
      source.close();
      return false;
    });
  }

  function pause() {
    pausable().forEach(function (part) {
      closeStreams(new URL(part.getAttribute("sse-connect"), document.baseURI).href);
      part.setAttribute("data-live", "paused");
    });
  }

  function resume() {
    pausable().forEach(function (part) {
      if (part.getAttribute("data-live") !== "paused") { return; }
      // htmx sets a part up again when its attributes change: the sse extension then
      // opens a new stream for it
      part.setAttribute("data-live", "resumed-" + Date.now());
      htmx.process(part);
    });
  }

  function pauseIfHidden() {
    if (document.visibilityState === "hidden") { pause(); }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { pause(); } else { resume(); }
  });
})();

/* A card number is typed for one payment only. Back after paying brings the checkout
   page back from the browser's history with the number it restored into the field, over
   a basket that is now empty: nothing is left to pay, so the number goes. (Back from a
   "please try again" page keeps it: that payment has yet to happen.) Served from
   /static: the CSP allows no inline script. */
(function () {
  "use strict";
  window.addEventListener("pageshow", function () {
    var card = document.getElementById("card_number");
    var pay = document.getElementById("pay-button");
    if (card && pay && pay.disabled) { card.value = ""; }
  });
})();

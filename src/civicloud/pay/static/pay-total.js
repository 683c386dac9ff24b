/* The sum of the ticked bills, on the bills page and on its button, as bills are ticked.
   The only script of the citizen's pages, and optional: without it the confirmation step
   shows the sum before anything is paid. Money is integer fen, shown as yuan. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-pay-bills]");
  if (!form) {
    return;
  }
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=bill_id][data-fen]"));
  var live = form.querySelector("[data-pay-live]");
  var note = form.querySelector("[data-pay-static]");
  var total = form.querySelector("[data-pay-total]");
  var count = form.querySelector("[data-pay-count]");
  var button = form.querySelector("[data-pay-button]");
  var prefix = form.getAttribute("data-currency") || "";
  var plain = button.textContent;

  function money(fen) {
    var whole = String(Math.floor(fen / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    var cents = String(fen % 100);
    return prefix + whole + "." + (cents.length < 2 ? "0" + cents : cents);
  }

  function update() {
    var sum = 0;
    var ticked = 0;
    boxes.forEach(function (box) {
      if (box.checked) {
        sum += parseInt(box.getAttribute("data-fen"), 10);
        ticked += 1;
      }
    });
    total.textContent = money(sum);
    count.textContent = count.getAttribute("data-template")
      .replace("%(count)s", String(ticked))
      .replace("%(total)s", String(boxes.length));
    button.textContent = ticked
      ? button.getAttribute("data-label-amount").replace("%(amount)s", money(sum))
      : plain;
  }

  form.addEventListener("change", update);
  live.hidden = false;
  note.hidden = true;
  update();
})();

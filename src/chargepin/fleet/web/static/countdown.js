// The lockout countdown of the radio app: "try again in m:ss", one second at a time; at 0 it
// sends the screen's own Try again form (the same button works without this script).
"use strict";
(function () {
  const shown = document.querySelector("[data-countdown]");
  if (!shown) return;
  const form = document.getElementById(shown.dataset.form);
  const end = Date.now() + Number(shown.dataset.countdown) * 1000;
  function tick() {
    const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    shown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    if (left === 0) {
      if (form) form.requestSubmit();
      return;
    }
    setTimeout(tick, 250);
  }
  tick();
})();

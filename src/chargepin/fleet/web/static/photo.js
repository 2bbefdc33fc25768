// Add a charger: the photo of the sticker is scaled down in the browser before it is sent
// (at most data-scale-to pixels wide and high, as a JPEG), so a phone sends about 200 KB instead
// of its camera's 2 to 5 MB and the server reads it in milliseconds. Without this script, or
// when the browser cannot open the image, the photo goes as it was taken and is read the same.
"use strict";
(function () {
  const input = document.getElementById("photo");
  const form = input && input.form;
  const side = input ? Number(input.dataset.scaleTo) : 0;
  if (!form || !(side > 0) || !window.createImageBitmap || !window.DataTransfer) return;
  let ready = false;

  async function scaled(file) {
    const bitmap = await createImageBitmap(file);
    try {
      const ratio = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
      if (ratio === 1) return null;
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * ratio));
      canvas.height = Math.max(1, Math.round(bitmap.height * ratio));
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
      return blob && new File([blob], "sticker.jpg", { type: "image/jpeg" });
    } finally {
      bitmap.close();
    }
  }

  form.addEventListener("submit", async function (event) {
    const file = input.files && input.files[0];
    if (ready || !file) return;
    event.preventDefault();
    try {
      const smaller = await scaled(file);
      if (smaller) {
        const files = new DataTransfer();
        files.items.add(smaller);
        input.files = files.files;
      }
    } catch (error) {
      // Not an image this browser opens: sent as it is, and the page says what is wrong.
    }
    ready = true;
    form.requestSubmit();
  });
})();

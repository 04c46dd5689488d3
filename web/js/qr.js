// The WeChat Pay code_url as a QR code, drawn on a canvas in the browser (uqr, vendored).
import { encode } from "../vendor/uqr.mjs";

export function drawQr(canvas, text, { scale = 6, border = 4 } = {}) {
  const { data, size } = encode(text, { ecc: "M", border: 0 });
  const side = (size + 2 * border) * scale;
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, side, side);
  ctx.fillStyle = "#000";
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      if (data[y][x]) ctx.fillRect((x + border) * scale, (y + border) * scale, scale, scale);
    }
  }
}

// In-browser image work: SHA-256 (SubtleCrypto) and compression to a size budget (canvas).

export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

const COMPRESSIBLE = new Set(["image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif"]);

/**
 * A JPEG of `file` within `maxBytes` and `maxSide`, upright (EXIF orientation applied), never enlarged,
 * at the highest quality that fits (binary search). Null when the file is already within both limits,
 * cannot be decoded here, or would not get smaller.
 */
export async function compressToBudget(file, { maxBytes, maxSide }) {
  if (!COMPRESSIBLE.has(file.type)) return null;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return null;
  }
  const side = Math.max(bitmap.width, bitmap.height);
  if (file.size <= maxBytes && side <= maxSide) {
    bitmap.close();
    return null;
  }
  const scale = Math.min(1, maxSide / side);
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // transparent PNGs on white, as the preview does
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const encode = (quality) => new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  let low = 0.3;
  let high = 0.95;
  let best = await encode(low);
  for (let i = 0; i < 6; i += 1) {
    const mid = (low + high) / 2;
    const blob = await encode(mid);
    if (blob && blob.size <= maxBytes) {
      best = blob;
      low = mid;
    } else {
      high = mid;
    }
  }
  const top = await encode(high);
  if (top && top.size <= maxBytes) best = top;
  if (!best || best.size >= file.size) return null;
  const name = file.name.replace(/\.[^.]+$/, "") + ".jpg";
  return new File([best], name, { type: "image/jpeg" });
}

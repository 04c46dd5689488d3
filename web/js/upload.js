// The upload queue: every file is hashed (SHA-256), checked against this batch and the user's upload
// journal (a photo already sent from this browser, and still in the library, is not sent again), optionally
// compressed to a size budget, looked up in the classification cache (a hit says the category is already
// known: classifying it will cost no model call; the photo is still sent, since the cache knows nothing
// about whose library a picture is in), then sent with a presigned POST through XMLHttpRequest so its
// progress and speed show. A limited number run at once; a failed file can be retried on its own.
import { ApiError, api, getSession } from "./api.js";
import { t } from "./i18n.js";
import { compressToBudget, sha256Hex } from "./images.js";
import { FINAL_IMAGE_STATES, images, putImage } from "./store.js";

const EXTENSION_TYPES = {
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
  bmp: "image/bmp",
  tif: "image/tiff",
  tiff: "image/tiff",
  avif: "image/avif",
  heic: "image/heic",
  heif: "image/heif",
};

export const settings = { concurrency: 3, compress: false, maxKb: 400, maxSide: 1920 };
export const queue = [];
const listeners = new Set();
let nextId = 1;
let running = 0;

export function onQueue(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function changed() {
  listeners.forEach((fn) => fn(queue));
}

function update(item, fields) {
  Object.assign(item, fields);
  changed();
}

function journalKey() {
  const session = getSession();
  return session && session.user ? `photopipe.journal.${session.user.user_id}` : null;
}

function journal() {
  const key = journalKey();
  try {
    return key ? JSON.parse(localStorage.getItem(key) || "{}") : {};
  } catch {
    return {};
  }
}

function remember(sha, imageId) {
  const key = journalKey();
  if (!key) return;
  const entries = journal();
  entries[sha] = imageId;
  const keys = Object.keys(entries);
  for (const old of keys.slice(0, Math.max(0, keys.length - 5000))) delete entries[old];
  localStorage.setItem(key, JSON.stringify(entries));
}

/** Forget a deleted photo, so that uploading it again sends it. */
export function forget(sha) {
  const key = journalKey();
  if (!key || !sha) return;
  const entries = journal();
  delete entries[sha];
  localStorage.setItem(key, JSON.stringify(entries));
}

export function contentType(file) {
  if (file.type) return file.type;
  const extension = (file.name.split(".").pop() || "").toLowerCase();
  return EXTENSION_TYPES[extension] || "application/octet-stream";
}

export function addFiles(found) {
  for (const { file, path } of found) {
    queue.push({
      id: nextId++,
      file,
      name: path || file.name,
      size: file.size,
      status: "queued",
      progress: 0,
      speed: 0,
      error: null,
      imageId: null,
      sha256: null,
      known: null,
      compressed: null,
      note: null,
    });
  }
  changed();
  pump();
}

export function retry(item) {
  if (item.status !== "failed" || item.final) return; // a photo ingest refused would be refused again
  update(item, { status: "queued", error: null, progress: 0, speed: 0 });
  pump();
}

export function retryFailed() {
  queue.filter((item) => item.status === "failed").forEach(retry);
}

export function clearDone() {
  for (let i = queue.length - 1; i >= 0; i -= 1) {
    if (["done", "duplicate", "already"].includes(queue[i].status)) queue.splice(i, 1);
  }
  changed();
}

export function setConcurrency(n) {
  settings.concurrency = Math.max(1, Math.min(8, n));
  pump();
}

function pump() {
  while (running < settings.concurrency) {
    const item = queue.find((q) => q.status === "queued");
    if (!item) return;
    running += 1;
    update(item, { status: "hashing" });
    send(item)
      .catch((error) =>
        update(item, {
          status: "failed",
          error: error instanceof ApiError ? error.message : String(error && error.message ? error.message : error),
        }),
      )
      .finally(() => {
        running -= 1;
        pump();
      });
  }
}

async function send(item) {
  if (item.size === 0) throw new Error(`${item.name}: the file is empty`);
  const sha = await sha256Hex(item.file);
  update(item, { sha256: sha });
  const twin = queue.find((q) => q !== item && q.sha256 === sha && q.id < item.id && q.status !== "failed");
  if (twin) {
    update(item, { status: "duplicate", note: t("up_duplicate", { name: twin.name }), imageId: twin.imageId });
    return;
  }
  const seen = journal()[sha];
  if (seen) {
    try {
      putImage(await api.get(`/images/${encodeURIComponent(seen)}`));
      update(item, { status: "already", imageId: seen, note: t("up_already") });
      return;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      forget(sha); // deleted since: send it again
    }
  }
  let blob = item.file;
  let sentSha = sha;
  if (settings.compress) {
    update(item, { status: "compressing" });
    const smaller = await compressToBudget(item.file, {
      maxBytes: settings.maxKb * 1024,
      maxSide: settings.maxSide,
    });
    if (smaller) {
      blob = smaller;
      sentSha = await sha256Hex(smaller);
      update(item, { compressed: { from: item.file.size, to: smaller.size } });
    }
  }
  update(item, { status: "checking" });
  const check = await api.post("/classify/check-cache", { sha256: sentSha });
  if (check && check.hit && check.classification) update(item, { known: check.classification });

  const filename = blob === item.file ? item.file.name : blob.name;
  const created = await api.post("/uploads", {
    filename,
    content_type: contentType(blob),
    size: blob.size,
    sha256: sentSha,
  });
  const now = new Date().toISOString();
  putImage({
    image_id: created.image_id,
    state: "pending_upload",
    filename,
    content_type: contentType(blob),
    created_at: now,
    updated_at: now,
    urls: null,
  });
  update(item, { imageId: created.image_id, status: "uploading", progress: 0 });
  await postForm(created.upload, blob, filename, (loaded, total, speed) =>
    update(item, { progress: total ? loaded / total : 0, speed }),
  );
  remember(sha, created.image_id);
  const record = images.get(created.image_id);
  if (record && record.state === "pending_upload") images.patch(created.image_id, { state: "processing" });
  update(item, { status: "processing", progress: 1 });
  followUntilFinal(item);
}

/** The item is done when its photo reaches a final state (pushed over the live updates). */
function followUntilFinal(item) {
  const check = () => {
    const record = images.get(item.imageId);
    if (!record) return false;
    if (record.state === "rejected" || record.state === "failed") {
      // The live update names the state; the sentence comes with the record read right after it.
      if (!record.reason_message) return false;
      update(item, { status: "failed", error: record.reason_message, final: true });
      return true;
    }
    if (FINAL_IMAGE_STATES.has(record.state) || record.state === "processed") {
      update(item, { status: "done" });
      return true;
    }
    return false;
  };
  if (check()) return;
  const stop = images.subscribe((id) => {
    if (id === item.imageId && check()) stop();
  });
}

function s3Error(xhr) {
  const text = xhr.responseText || "";
  const message = /<Message>([^<]*)<\/Message>/.exec(text);
  const code = /<Code>([^<]*)<\/Code>/.exec(text);
  return new ApiError(
    xhr.status,
    code ? code[1] : `http_${xhr.status}`,
    message ? `${message[1]} (${code ? code[1] : xhr.status})` : `the storage answered ${xhr.status}`,
  );
}

/** The presigned POST with upload progress: fields first, the file last (S3 ignores what follows it). */
function postForm(upload, blob, filename, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
    form.append("file", blob, filename);
    const xhr = new XMLHttpRequest();
    let last = { at: performance.now(), loaded: 0 };
    let speed = 0;
    xhr.upload.addEventListener("progress", (event) => {
      const now = performance.now();
      const seconds = (now - last.at) / 1000;
      if (seconds > 0.2 || event.loaded === event.total) {
        const current = (event.loaded - last.loaded) / Math.max(seconds, 0.001);
        speed = speed ? 0.7 * speed + 0.3 * current : current;
        last = { at: now, loaded: event.loaded };
      }
      onProgress(event.loaded, event.total, speed);
    });
    xhr.addEventListener("load", () => (xhr.status < 300 ? resolve() : reject(s3Error(xhr))));
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", t("network_error"))));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    xhr.open("POST", upload.url);
    xhr.send(form);
  });
}
